"""deploy/docker-compose.yml: parsed by docker-compose itself (no engine
needed for `config`), then checked against the node and its own config files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import (
    COMPOSE_FILE,
    REPO,
    Node,
    TurnServer,
    effective_config,
    free_port,
    ice_servers_from_a_join,
    node_binary,
    turn_allocate,
)

DEPLOY = REPO / "deploy"
NODES = ("node-1", "node-2", "node-3")


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert parts, text
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: helm/tests/run.sh installs Debian's package"
    result = subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_whole_stack_is_there(compose):
    services = set(compose["services"])
    assert {"redis", *NODES, "nginx", "prometheus", "grafana", "otel-collector", "jaeger", "coturn"} <= services


def test_nodes_build_from_the_dockerfile(compose):
    for name in NODES:
        build = compose["services"][name]["build"]
        assert Path(build["context"]) == REPO
        assert (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).resolve() == DEPLOY / "Dockerfile"


def node_env(compose, name) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"][name]["environment"].items()}


def test_node_environments_are_accepted_by_the_node(compose):
    ids = set()
    for name in NODES:
        config = effective_config(node_env(compose, name))
        assert config["redis"]["url"].startswith("redis://redis:"), "three nodes need the Redis bus"
        ids.add(config["node"]["id"])
    assert ids == set(NODES), "every node has its own id"


def test_nodes_get_time_to_drain(compose):
    for name in NODES:
        service = compose["services"][name]
        config = effective_config(node_env(compose, name))
        need = duration_s(config["drain"]["timeout"].replace(" ", "")) + duration_s(
            config["server"]["shutdown_timeout"].replace(" ", "")
        )
        assert duration_s(service["stop_grace_period"]) > need


def test_node_health_check_is_the_binary(compose):
    help_text = subprocess.run([str(node_binary()), "--help"], capture_output=True, text=True).stdout
    for name in NODES:
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "/usr/local/bin/vc-signaling"
        assert test[2] in help_text
        assert compose["services"][name]["read_only"] is True
        assert compose["services"][name]["cap_drop"] == ["ALL"]


def host_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        if source.startswith("/"):
            mounts[target] = Path(source)
    return mounts


def test_mounted_config_files_exist(compose):
    for name, service in compose["services"].items():
        for target, source in host_mounts(service).items():
            if source.is_relative_to(DEPLOY / "compose"):
                assert source.exists(), f"{name} mounts missing {source}"


def test_nginx_balances_websockets_over_all_nodes(compose):
    nginx = compose["services"]["nginx"]
    conf_path = host_mounts(nginx)["/etc/nginx/nginx.conf"]
    conf = conf_path.read_text()
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", conf, re.M))
    expected = {f"{n}:{effective_config(node_env(compose, n))['server']['port']}" for n in NODES}
    assert servers == expected
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", conf)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", conf)
    assert re.search(r"proxy_http_version\s+1\.1;", conf)
    assert "ip_hash" not in conf and "sticky" not in conf, "no session affinity is needed"
    heartbeat = duration_s(effective_config(node_env(compose, "node-1"))["heartbeat"]["interval"])
    read_timeout = duration_s(re.search(r"proxy_read_timeout\s+(\S+);", conf).group(1))
    assert read_timeout > heartbeat
    assert "http_503" in re.search(r"proxy_next_upstream\s+([^;]+);", conf).group(1), "retry a draining node"
    # Host goes through with its port, so a page nginx served (Origin
    # http://host:port) is the node's own origin and may open a WebSocket.
    assert re.search(r"proxy_set_header\s+Host\s+\$http_host;", conf), "forward Host with its port"
    listen = int(re.search(r"^\s*listen\s+(\d+);", conf, re.M).group(1))
    assert any(str(p.get("target")) == str(listen) for p in nginx["ports"])


def test_prometheus_scrapes_the_nodes_and_loads_the_rules(compose):
    prometheus = compose["services"]["prometheus"]
    mounts = host_mounts(prometheus)
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    rules_dir = mounts["/etc/prometheus/rules"]
    assert rules_dir == DEPLOY / "prometheus" / "rules"
    assert any(f.startswith("/etc/prometheus/rules/") for f in config["rule_files"])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "video-caller")
    assert job["metrics_path"] == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{n}:{effective_config(node_env(compose, n))['server']['port']}" for n in NODES}


def test_grafana_is_provisioned(compose):
    grafana = compose["services"]["grafana"]
    mounts = host_mounts(grafana)
    assert mounts["/var/lib/grafana/dashboards"] == DEPLOY / "grafana" / "dashboards"
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())["datasources"]
    hosts = {re.match(r"https?://([\w-]+):", d["url"]).group(1) for d in datasources}
    assert hosts <= set(compose["services"]), hosts
    assert {d["type"] for d in datasources} >= {"prometheus", "jaeger"}
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_collector_exports_traces_to_jaeger(compose):
    collector = compose["services"]["otel-collector"]
    config = yaml.safe_load(host_mounts(collector)["/etc/otelcol/config.yml"].read_text())
    command = " ".join(collector["command"])
    assert "/etc/otelcol/config.yml" in command
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    jaeger = next(e for e in exporters if e.startswith("otlp"))
    host = config["exporters"][jaeger]["endpoint"].split(":")[0]
    assert host == "jaeger" and "jaeger" in compose["services"]
    assert set(config["service"]["pipelines"]["traces"]["receivers"]) <= set(config["receivers"])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_prometheus_config_passes_promtool(compose, tmp_path):
    """promtool checks the scrape config, with the rules mounted where the
    container sees them (the rule_files glob is resolved by path)."""
    mounts = host_mounts(compose["services"]["prometheus"])
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    rules = mounts["/etc/prometheus/rules"]
    config["rule_files"] = [f.replace("/etc/prometheus/rules", str(rules)) for f in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def coturn_option(command: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in command if a.startswith(f"--{name}=")]
    return value


def test_coturn_shares_the_nodes_secret_and_port(compose):
    coturn = compose["services"]["coturn"]
    command = [str(a) for a in coturn["command"]]
    assert coturn["network_mode"] == "host", "relay addresses must be the host's"
    assert coturn["read_only"] is True and coturn["cap_drop"] == ["ALL"]
    assert "--use-auth-secret" in command
    port = coturn_option(command, "listening-port")
    for name in NODES:
        config = effective_config(node_env(compose, name))
        assert node_env(compose, name)["VC_ICE__TURN_SECRET"] == coturn_option(command, "static-auth-secret")
        assert config["ice"]["turn_urls"] == [
            f"turn:127.0.0.1:{port}?transport=udp",
            f"turn:127.0.0.1:{port}?transport=tcp",
        ]
        assert config["ice"]["stun_urls"] == [f"stun:127.0.0.1:{port}"]


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed")
def test_compose_coturn_grants_relays_with_credentials_a_node_minted(compose, tmp_path):
    """The compose coturn command run by a real turnserver and a node with the
    compose environment: the node's credentials get an allocation. Both move
    to a free port, so as not to collide with anything on this machine."""
    command = [str(a) for a in compose["services"]["coturn"]["command"]]
    port = coturn_option(command, "listening-port")
    free = str(free_port())
    args = [
        a.replace(f"--listening-port={port}", f"--listening-port={free}").replace("=/tmp/", f"={tmp_path}/")
        for a in command
    ]
    server = TurnServer(args, int(free), tmp_path / "turnserver.log")
    node = None
    try:
        env = {k: v.replace(f":{port}?", f":{free}?") for k, v in node_env(compose, "node-1").items()}
        env.pop("VC_REDIS__URL")
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        node = Node(env)
        ice = ice_servers_from_a_join(node)
        turn_entry = next(s for s in ice if any(u.startswith("turn:") for u in s["urls"]))
        host, relayed_port = turn_allocate(int(free), turn_entry["username"], turn_entry["credential"])
        assert host == "127.0.0.1"
        assert int(coturn_option(command, "min-port")) <= relayed_port <= int(coturn_option(command, "max-port"))
    finally:
        if node:
            node.stop()
        server.stop()
