"""The chart against the node itself: the rendered Deployment's environment,
ports and probes must be what the real vc-signaling binary reads and serves.

Nothing here compares strings with a copy of the node's code: the rendered
environment is handed to `vc-signaling print-config` (which refuses unknown or
invalid keys), and the probe paths are fetched from a running node.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CHART,
    CHART_OWNED_SETTINGS,
    POD_NAME,
    REPO,
    SECRET_DUMMIES,
    Node,
    container_env,
    effective_config,
    flatten,
    free_port,
    http_get,
    node_binary,
    node_container,
    objects,
    print_config,
    production_values,
    render,
    signaling_deployment,
    wait_for_port,
)

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
SETTINGS_SCHEMA = SCHEMA["properties"]["settings"]["properties"]

UNITS_MS = {
    "ns": 1e-6, "nsec": 1e-6, "us": 1e-3, "usec": 1e-3, "µs": 1e-3,
    "ms": 1, "msec": 1, "millis": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}


def duration_ms(text: str) -> float:
    """Milliseconds of a humantime duration ("30s", "2s 500ms", "1day 12h")."""
    parts = re.findall(r"(\d+)\s*([a-zµ]+)", text)
    assert parts and re.fullmatch(r"(\s*\d+\s*[a-zµ]+)+\s*", text), f"not a duration: {text!r}"
    return sum(int(n) * UNITS_MS[unit] for n, unit in parts)


def is_duration(spec: dict[str, Any]) -> bool:
    return any(s.get("$ref") == "#/definitions/duration" for s in spec.get("allOf", [])) or spec.get(
        "$ref"
    ) == "#/definitions/duration"


def same_setting(spec: dict[str, Any], effective: Any, env_value: str) -> bool:
    """Whether the node's effective value is the one the chart rendered."""
    if is_duration(spec):
        return duration_ms(effective) == duration_ms(env_value)
    if isinstance(effective, list):
        return ",".join(effective) == env_value
    if isinstance(effective, bool):
        return str(effective).lower() == env_value
    if isinstance(effective, (int, float)):
        return float(effective) == float(env_value)
    return str(effective) == env_value


@pytest.fixture(scope="module")
def node_defaults() -> dict[str, Any]:
    return effective_config({})


def production_objects():
    return objects(render(production_values()))


def test_binary_is_current_enough():
    """The checks need the node's print-config (JSON) and health-check commands."""
    help_text = subprocess.run([str(node_binary()), "--help"], capture_output=True, text=True, check=True).stdout
    assert "print-config" in help_text and "health-check" in help_text, help_text


def test_schema_settings_are_exactly_the_node_settings(node_defaults):
    """values.schema.json's settings cover every setting the node has (less the
    ones the chart sets itself), and nothing the node does not know."""
    node_keys = set(flatten(node_defaults))
    schema_keys = {
        f"{section}.{key}" for section, spec in SETTINGS_SCHEMA.items() for key in spec["properties"]
    }
    unknown = schema_keys - node_keys
    assert not unknown, f"values.schema.json allows settings the node does not have: {sorted(unknown)}"
    assert CHART_OWNED_SETTINGS <= node_keys, sorted(CHART_OWNED_SETTINGS - node_keys)
    missing = node_keys - schema_keys - CHART_OWNED_SETTINGS
    assert not missing, (
        f"the node has settings the chart cannot set: {sorted(missing)}; add them to "
        "helm/video-caller/values.schema.json (and values.yaml comments)"
    )


def test_schema_types_match_the_node(node_defaults):
    for key, default in flatten(node_defaults).items():
        if key in CHART_OWNED_SETTINGS:
            continue
        section, name = key.split(".")
        spec = SETTINGS_SCHEMA[section]["properties"][name]
        if is_duration(spec):
            assert isinstance(default, str) and duration_ms(default) >= 0, key
            continue
        expected = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "string",
            list: "array",
        }[type(default)]
        declared = spec["type"]
        ok = declared == expected or (declared == "number" and expected in ("integer", "number"))
        assert ok, f"{key}: schema says {declared}, the node's default {default!r} is {expected}"
        if "enum" in spec:
            assert default in spec["enum"], f"{key}: node default {default!r} not in the schema's enum"


def test_values_yaml_settings_are_accepted_by_the_node():
    """The default values' ConfigMap, as the node reads it."""
    env = container_env(objects(render({})))
    config = effective_config(env)
    assert config["server"]["port"] == 8080
    assert config["node"]["id"] == POD_NAME


def test_production_environment_is_what_the_node_reads():
    objs = production_objects()
    env = container_env(objs)
    config = effective_config(env)
    deployment = signaling_deployment(objs)
    container = node_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config["server"]["port"], "container port must be the port the node listens on"
    assert config["server"]["host"] == "0.0.0.0", "the node must listen on the pod's address"
    assert config["node"]["id"] == POD_NAME, "each pod is a node named after itself"
    assert config["auth"]["mode"] == "jwt"
    assert config["auth"]["jwt_secret"] == "<redacted>"
    assert config["ice"]["turn_secret"] == "<redacted>"
    assert config["redis"]["url"].startswith("redis://"), "a fleet runs on Redis"
    for name, value in env.items():
        if not name.startswith("VC_") or name in SECRET_DUMMIES or name in ("VC_NODE__ID",):
            continue
        section, key = name[3:].lower().split("__")
        if f"{section}.{key}" in CHART_OWNED_SETTINGS:
            continue
        spec = SETTINGS_SCHEMA[section]["properties"][key]
        assert same_setting(spec, config[section][key], value), (name, value, config[section][key])


def changed_value(key: str, spec: dict[str, Any], default: Any) -> Any:
    """A valid value for key that differs from the node's default."""
    if "enum" in spec:
        return next(v for v in spec["enum"] if v != default)
    if is_duration(spec):
        ms = int(duration_ms(default) * 2) or 1500
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
    kind = spec["type"]
    if kind == "boolean":
        return not default
    if kind == "integer":
        hi = spec.get("maximum", 2**31)
        return default + 1 if default + 1 <= hi else default - 1
    if kind == "number":
        return float(default) * 2 + 0.5
    if kind == "array":
        if key == "ice.stun_urls":
            return ["stun:stun1.example.test:3478", "stuns:stun2.example.test:5349"]
        if key == "ice.turn_urls":
            return ["turn:turn.example.test:3478?transport=udp", "turns:turn.example.test:5349"]
        if key == "server.allowed_origins":
            return ["https://call.example.test", "app.example.test", "http://localhost:8000"]
        if key == "tls.self_signed_names":
            return ["call.example.test", "10.0.0.7"]
    if key == "telemetry.log_level":
        return "debug,vc_signaling=trace"
    if key == "auth.issuer":
        return "https://issuer.example.test"
    pytest.fail(f"no test value for new setting {key} ({spec}); extend changed_value()")


def test_every_setting_reaches_the_node(node_defaults):
    """Every setting the schema allows, set to a non-default value in values,
    arrives in the node with that value: names, list joining, number and
    duration formatting all work."""
    settings: dict[str, dict[str, Any]] = {}
    for key, default in flatten(node_defaults).items():
        if key in CHART_OWNED_SETTINGS:
            continue
        section, name = key.split(".")
        spec = SETTINGS_SCHEMA[section]["properties"][name]
        settings.setdefault(section, {})[name] = changed_value(key, spec, default)
    values = {
        "settings": settings,
        "secrets": {"jwtSecret": SECRET_DUMMIES["VC_AUTH__JWT_SECRET"], "turnSecret": "turn"},
        "redis": {"url": "redis://redis.example.test:6379/1"},
        "replicaCount": 2,
    }
    objs = objects(render(values))
    config = effective_config(container_env(objs))
    for section, keys in settings.items():
        for name, wanted in keys.items():
            got = config[section][name]
            spec = SETTINGS_SCHEMA[section]["properties"][name]
            if is_duration(spec):
                assert duration_ms(got) == duration_ms(wanted), (section, name, got, wanted)
            elif isinstance(wanted, float):
                assert float(got) == wanted, (section, name, got, wanted)
            else:
                assert got == wanted, (section, name, got, wanted)
            assert got != node_defaults[section][name], f"{section}.{name} kept the node default"


def test_grace_period_covers_the_nodes_own_drain():
    objs = production_objects()
    config = effective_config(container_env(objs))
    pod = signaling_deployment(objs)["spec"]["template"]["spec"]
    container = node_container(signaling_deployment(objs))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = duration_ms(config["drain"]["timeout"]) / 1000
    shutdown = duration_ms(config["server"]["shutdown_timeout"]) / 1000
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + shutdown


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


def serves_route(path: str) -> bool:
    """Whether the node's HTTP app registers path (it is being added for /metrics)."""
    sources = (REPO / "services" / "signaling" / "src").rglob("*.rs")
    return any(f'"{path}"' in p.read_text(encoding="utf-8") for p in sources)


def test_probes_and_routes_answer_on_a_running_node():
    """Starts the node with the production environment (without the Redis URL:
    there is no Redis here) and requests every probe path on the probe's port."""
    objs = production_objects()
    deployment = signaling_deployment(objs)
    container = node_container(deployment)
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = container_env(objs)
    env.pop("VC_REDIS__URL")
    node = Node(env)
    try:
        for kind, probe in probes(container).items():
            assert probe["port"] in named_ports, f"{kind} uses port {probe['port']}, not a container port"
            status, body, headers = node.get(probe["path"])
            if kind == "readinessProbe":
                assert status in (200, 503), f"{probe['path']}: {status}"
                assert json.loads(body)["status"] in ("ready", "not-ready")
            else:
                assert status == 200, f"{kind} {probe['path']} answered {status}"
                assert json.loads(body)["status"] == "ok"
        assert probes(container)["livenessProbe"]["path"] == "/healthz"
        assert probes(container)["readinessProbe"]["path"] == "/readyz"
        # Without Redis the in-process bus is always connected: ready.
        assert node.get("/readyz")[0] == 200
        # The image's HEALTHCHECK command works against it.
        check = subprocess.run(
            [str(node_binary()), "health-check", "--port", str(node.port)], capture_output=True, text=True, timeout=10
        )
        assert check.returncode == 0, check.stderr
        if (REPO / "web-client" / "public" / "index.html").exists():
            status, _, headers = node.get("/")
            assert status == 200 and headers["content-type"].startswith("text/html")
        # The ServiceMonitor scrapes /metrics on the metrics port; the http
        # port (the one the Ingress routes to) does not serve it.
        named_metrics = named_ports["metrics"]
        assert env["VC_SERVER__METRICS_ADDRESS"] == f"0.0.0.0:{named_metrics}"
        assert node.metrics_port is not None
        wait_for_port(node.metrics_port, node.process)
        status, body, headers = http_get(node.metrics_port, "/metrics")
        assert status == 200, "the ServiceMonitor scrapes /metrics"
        assert b"# TYPE" in body or b"# HELP" in body, body[:200]
        assert node.get("/metrics")[0] == 404, "/metrics must not be public on the http port"
        # SIGTERM: without Redis there is nowhere to drain to; it must exit well
        # within the pod's grace period, cleanly.
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        code = node.process.wait(timeout=deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        assert code == 0, node.process.stdout.read() if node.process.stdout else code
        assert time.monotonic() - started < 15
    finally:
        node.stop()


def test_health_check_fails_without_a_node():
    check = subprocess.run(
        [str(node_binary()), "health-check", "--port", str(free_port())], capture_output=True, text=True, timeout=10
    )
    assert check.returncode != 0


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_production_node_on_redis_turns_ready_and_drains(tmp_path: Path):
    """With a real Redis the production environment gives a ready node, which
    on SIGTERM turns not-ready and exits within the grace period."""
    objs = production_objects()
    deployment = signaling_deployment(objs)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node = None
    try:
        env = container_env(objs, {"VC_REDIS__URL": f"redis://127.0.0.1:{redis_port}/0"})
        node = Node(env)
        deadline = time.monotonic() + 20
        while node.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, f"not ready on Redis: {node.get('/readyz')}"
            time.sleep(0.2)
        body = json.loads(node.get("/readyz")[1])
        assert body["node"] == POD_NAME and body["bus"] == "connected"
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        code = node.process.wait(timeout=grace)
        assert code == 0
        assert time.monotonic() - started < grace
    finally:
        if node:
            node.stop()
        redis.kill()
        redis.wait(timeout=10)


def test_unknown_setting_is_refused_by_the_node():
    """A control: the node does refuse what the schema refuses."""
    result = print_config({"VC_ROOMS__CAPCITY": "4"})
    assert result.returncode != 0 and "capcity" in result.stderr


def test_round_numbers_are_not_rendered_in_exponent_form():
    """YAML numbers reach templates as floats; 2000000 must not become "2e+06"."""
    values = {"settings": {"limits": {"max_frame_bytes": 2000000, "messages_per_second": 12.5, "outbound_queue": 1000}}}
    env = container_env(objects(render(values)))
    assert env["VC_LIMITS__MAX_FRAME_BYTES"] == "2000000"
    assert env["VC_LIMITS__OUTBOUND_QUEUE"] == "1000"
    assert env["VC_LIMITS__MESSAGES_PER_SECOND"] == "12.5"
    config = effective_config(env)
    assert config["limits"]["max_frame_bytes"] == 2000000


def test_rendered_origins_and_metrics_address_are_what_the_node_reads():
    """The chart's allowed origins (from the Ingress hosts, or the operator's
    list) and metrics listener reach the node as the settings it enforces."""
    config = effective_config(container_env(production_objects()))
    assert config["server"]["allowed_origins"] == ["https://call.example.com"]
    assert config["server"]["metrics_address"] == "0.0.0.0:9090"
    values = production_values()
    values["settings"]["server"]["allowed_origins"] = ["https://app.example.org", "call.example.net"]
    config = effective_config(container_env(objects(render(values))))
    assert config["server"]["allowed_origins"] == ["https://app.example.org", "call.example.net"]


def test_node_tls_from_a_secret_is_served_and_probed_over_https(tmp_path: Path):
    """With tls.secretName the pods mount the Secret, the node reads its files
    from there, and the probes speak HTTPS: the real node, given a certificate
    laid out as the kubelet mounts a kubernetes.io/tls Secret, answers every
    probe path over HTTPS, and the image's health check works against it."""
    import ssl
    import urllib.request

    values = production_values()
    values["tls"] = {"secretName": "vc-node-tls"}
    objs = objects(render(values))
    deployment = signaling_deployment(objs)
    pod = deployment["spec"]["template"]["spec"]
    container = node_container(deployment)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "vc-node-tls"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert mount["readOnly"] is True
    env = container_env(objs)
    assert env["VC_TLS__CERT_FILE"] == f"{mount['mountPath']}/tls.crt"
    assert env["VC_TLS__KEY_FILE"] == f"{mount['mountPath']}/tls.key"
    for kind, probe in probes(container).items():
        assert probe["scheme"] == "HTTPS", kind

    # The Secret's two keys, where the rendered environment says, under tmp_path.
    secret_dir = tmp_path / mount["mountPath"].lstrip("/")
    secret_dir.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=vc.rtc.svc", "-addext", "subjectAltName=DNS:vc.rtc.svc,IP:127.0.0.1", "-days", "2",
         "-keyout", str(secret_dir / "tls.key"), "-out", str(secret_dir / "tls.crt")],
        check=True, capture_output=True,
    )
    env.pop("VC_REDIS__URL")
    env["VC_TLS__CERT_FILE"] = str(secret_dir / "tls.crt")
    env["VC_TLS__KEY_FILE"] = str(secret_dir / "tls.key")
    node = Node(env)
    try:
        context = ssl.create_default_context(cafile=str(secret_dir / "tls.crt"))
        for kind, probe in probes(container).items():
            with urllib.request.urlopen(f"https://127.0.0.1:{node.port}{probe['path']}", context=context, timeout=3) as r:
                assert r.status == 200, (kind, r.status)
                assert json.loads(r.read())["status"] in ("ok", "ready"), kind
        plain = subprocess.run(
            [str(node_binary()), "health-check", "--port", str(node.port)],
            env={**env, "VC_SERVER__PORT": str(node.port)}, capture_output=True, text=True, timeout=10,
        )
        assert plain.returncode == 0, plain.stderr
        # /metrics stays plain HTTP on its own listener.
        wait_for_port(node.metrics_port, node.process)
        assert http_get(node.metrics_port, "/metrics")[0] == 200
    finally:
        node.stop()


def test_node_tls_choices():
    self_signed = objects(render({"settings": {"tls": {"self_signed": True}}}))
    container = node_container(signaling_deployment(self_signed))
    assert {p["scheme"] for p in probes(container).values()} == {"HTTPS"}
    assert not [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert effective_config(container_env(self_signed))["tls"]["self_signed"] is True
    plain = node_container(signaling_deployment(objects(render({}))))
    assert all("scheme" not in p for p in probes(plain).values()), "plain HTTP by default"
    with pytest.raises(Exception, match="choose one"):
        render({"tls": {"secretName": "x"}, "settings": {"tls": {"self_signed": True}}})
