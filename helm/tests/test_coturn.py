"""coturn as the chart deploys it (coturn.enabled): the rendered objects, the
secret it shares with the nodes, and the rendered command line run by Debian's
turnserver, granting allocations with credentials a real node minted."""

from __future__ import annotations

import base64
import random
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from aioice.stun import TransactionFailed

from conftest import (
    RELEASE,
    Node,
    TurnServer,
    container_env,
    effective_config,
    find,
    free_port,
    ice_servers_from_a_join,
    node_container,
    objects,
    one,
    production_values,
    render,
    signaling_deployment,
    turn_allocate,
)

COTURN = f"{RELEASE}-video-caller-coturn"


def coturn_values(**coturn: Any) -> dict[str, Any]:
    return {
        "coturn": {"enabled": True, "publicHost": "turn.example.com", **coturn},
        "secrets": {"turnSecret": "chart-shared-turn-secret"},
    }


def coturn_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objs, "Deployment", COTURN)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def option(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]


def test_coturn_is_off_by_default():
    objs = objects(render({}))
    assert not find(objs, "Deployment", COTURN)
    assert "VC_ICE__TURN_URLS" not in one(objs, "ConfigMap", f"{RELEASE}-video-caller")["data"]


@pytest.mark.parametrize("host_network", [True, False])
def test_coturn_objects_validate_and_share_the_nodes_secret(host_network):
    values = coturn_values(hostNetwork=host_network, relayPortMin=50000, relayPortMax=50009)
    objs = objects(render(values))
    for obj in objs:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    deployment = one(objs, "Deployment", COTURN)
    pod = deployment["spec"]["template"]["spec"]
    container = coturn_container(objs)
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "coturn"
    assert pod.get("hostNetwork", False) is host_network
    # The secret coturn checks credentials with is the one the nodes mint them with.
    (secret_env,) = [e for e in container["env"] if e["name"] == "TURN_SECRET"]
    node_env = {e["name"]: e for e in node_container(signaling_deployment(objs))["env"]}
    assert secret_env["valueFrom"] == node_env["VC_ICE__TURN_SECRET"]["valueFrom"]
    args = container["args"]
    assert "--static-auth-secret=$(TURN_SECRET)" in args and "--use-auth-secret" in args
    assert not any("chart-shared-turn-secret" in a for a in args), "the secret stays out of the pod spec"
    assert option(args, "min-port") == ["50000"] and option(args, "max-port") == ["50009"]
    assert "10.0.0.0-10.255.255.255" in option(args, "denied-peer-ip"), "no relaying into the cluster network"
    # The nodes hand browsers coturn's public address.
    config = effective_config(container_env(objs))
    assert config["ice"]["stun_urls"] == ["stun:turn.example.com:3478"]
    assert config["ice"]["turn_urls"] == [
        "turn:turn.example.com:3478?transport=udp",
        "turn:turn.example.com:3478?transport=tcp",
    ]
    assert config["ice"]["turn_secret"] == "<redacted>"
    services = find(objs, "Service", COTURN)
    if host_network:
        assert not services, "on the host's network no Service is needed"
    else:
        (svc,) = services
        ports = {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]}
        assert {(3478, "UDP"), (3478, "TCP")} <= ports
        assert {(p, "UDP") for p in range(50000, 50010)} <= ports, "every relay port is forwarded"
        assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_network_policy_admits_turn_and_the_relay_range():
    values = coturn_values(hostNetwork=False, relayPortMin=50000, relayPortMax=50009)
    values["networkPolicy"] = {"enabled": True}
    objs = objects(render(values))
    policy = one(objs, "NetworkPolicy", COTURN)
    kubernetes_validate.validate(policy, "1.30.0", strict=True)
    (rule,) = policy["spec"]["ingress"]
    assert "from" not in rule, "browsers come from anywhere"
    ports = {(p["port"], p.get("endPort"), p["protocol"]) for p in rule["ports"]}
    assert ports == {(3478, None, "UDP"), (3478, None, "TCP"), (50000, 50009, "UDP")}
    pod_labels = one(objs, "Deployment", COTURN)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    values["coturn"]["hostNetwork"] = True
    assert not find(objects(render(values)), "NetworkPolicy", COTURN), "host networking ignores policies"


def test_an_existing_secret_and_operator_urls_win():
    values = production_values()
    values["coturn"] = {"enabled": True, "publicHost": "203.0.113.10"}
    objs = objects(render(values))
    (secret_env,) = [e for e in coturn_container(objs)["env"] if e["name"] == "TURN_SECRET"]
    assert secret_env["valueFrom"]["secretKeyRef"]["name"] == values["secrets"]["existingSecret"]
    # production-values.yaml lists TURN URLs of its own: they are kept.
    config = effective_config(container_env(objs))
    assert config["ice"]["turn_urls"] == values["settings"]["ice"]["turn_urls"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"coturn": {"enabled": True}, "secrets": {"turnSecret": "s"}}, "coturn.publicHost"),
        ({"coturn": {"enabled": True, "publicHost": "turn.example.com"}}, "secret coturn and the nodes share"),
        (coturn_values(relayPortMin=50010, relayPortMax=50000), "relayPortMin"),
        (coturn_values(hostNetwork=False, relayPortMin=50000, relayPortMax=50400), "under 200"),
    ],
)
def test_broken_coturn_setups_are_refused(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed")
def test_rendered_coturn_grants_relays_with_credentials_the_node_minted(tmp_path: Path):
    """The chart's coturn command line run by a real turnserver, the chart's
    node environment run by the real node: the node's joined.iceServers point
    at coturn, and its credentials get an allocation, over UDP and TCP. Wrong
    credentials do not, and a peer in a denied range gets no permission."""
    port = free_port()
    relay_min = random.randrange(50000, 59000, 100)
    values = coturn_values(publicHost="127.0.0.1", port=port, relayPortMin=relay_min, relayPortMax=relay_min + 19)
    objs = objects(render(values))
    secret = base64.b64decode(one(objs, "Secret")["data"]["turn-secret"]).decode()
    # What the kubelet does: $(TURN_SECRET) from the Secret; /tmp is the pod's emptyDir.
    args = [a.replace("$(TURN_SECRET)", secret).replace("=/tmp/", f"={tmp_path}/") for a in coturn_container(objs)["args"]]
    server = TurnServer(args, port, tmp_path / "turnserver.log")
    node = None
    try:
        env = container_env(objs, {"VC_ICE__TURN_SECRET": secret})
        node = Node(env)
        ice = ice_servers_from_a_join(node)
        turn_entry = next(s for s in ice if any(u.startswith("turn:") for u in s["urls"]))
        assert turn_entry["urls"] == [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
        assert any(f"stun:127.0.0.1:{port}" in s["urls"] for s in ice)
        username, credential = turn_entry["username"], turn_entry["credential"]
        for transport in ("udp", "tcp"):
            host, relayed_port = turn_allocate(port, username, credential, transport)
            assert host == "127.0.0.1" and relay_min <= relayed_port <= relay_min + 19, (transport, relayed_port)
        with pytest.raises(TransactionFailed, match="401"):
            turn_allocate(port, username, credential + "x")
        with pytest.raises(TransactionFailed, match="403"):
            turn_allocate(port, username, credential, peer=("10.1.2.3", 9))
    finally:
        if node:
            node.stop()
        server.stop()
