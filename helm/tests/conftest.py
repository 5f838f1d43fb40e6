"""Shared helpers of the deployment checks (helm/tests/run.sh runs them).

Paths, chart rendering through Helm's own Go SDK (helm-python-sdk), the node
binary and a way to run it with an environment taken from rendered objects.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "video-caller"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
NODE_BINARY = Path(os.environ.get("FLEET_NODE_BIN", REPO / "target" / "debug" / "vc-signaling"))

RELEASE = "vc"
NAMESPACE = "rtc"
# A pod name as a ReplicaSet makes it: what the downward API gives VC_NODE__ID.
POD_NAME = "vc-video-caller-7c9d8f6b5-x2x7q"

# Settings the chart sets itself rather than through .Values.settings.
CHART_OWNED_SETTINGS = {
    "server.host",
    "server.port",
    "server.metrics_address",
    "node.id",
    "auth.jwt_secret",
    "ice.turn_secret",
    "redis.url",
    "tls.cert_file",
    "tls.key_file",
}

# Dummies of a valid shape for Secret references, by the variable they feed.
SECRET_DUMMIES = {
    "VC_AUTH__JWT_SECRET": "test-jwt-secret-0123456789abcdef-0123456789abcdef",
    "VC_ICE__TURN_SECRET": "test-turn-shared-secret",
    "VC_REDIS__URL": "redis://:test-password@redis.invalid:6379/0",
}


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def production_values() -> dict[str, Any]:
    return load_yaml(PRODUCTION_VALUES)


def render(values: dict[str, Any] | None = None, chart_dir: Path = CHART) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce."""
    with helm.Chart.load(chart_dir) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt excluded)."""
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def signaling_deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    deployments = [
        d
        for d in find(objs, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == "signaling"
    ]
    assert len(deployments) == 1, deployments
    return deployments[0]


def node_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "signaling")


def container_env(objs: list[dict[str, Any]], dummies: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the node container would see: envFrom ConfigMaps/Secrets
    of this render, then env (literal values, the downward API, and dummies of a
    valid shape for secretKeyRefs). Fails on a reference it cannot resolve."""
    dummies = {**SECRET_DUMMIES, **(dummies or {})}
    container = node_container(signaling_deployment(objs))
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = one(objs, "ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in cm.get("data", {}).items()})
        else:
            raise AssertionError(f"unexpected envFrom source {source}")
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name", ref
            env[name] = POD_NAME
        elif "secretKeyRef" in ref:
            assert name in dummies, f"no dummy for secret-backed {name}"
            env[name] = dummies[name]
        else:
            raise AssertionError(f"cannot resolve {name}: {ref}")
    return env


def node_binary() -> Path:
    if not NODE_BINARY.exists():
        pytest.fail(f"{NODE_BINARY} is missing: helm/tests/run.sh builds it (cargo build -p vc-signaling)")
    return NODE_BINARY


def base_env() -> dict[str, str]:
    """A clean environment: no VC_* or RUST_LOG from the caller's shell."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}


def print_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(node_binary()), "print-config"],
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def effective_config(env: dict[str, str]) -> dict[str, Any]:
    """The node's effective settings for env; fails with the node's message."""
    result = print_config(env)
    assert result.returncode == 0, (
        f"vc-signaling print-config refused the environment:\n{result.stderr.strip()}\n"
        f"environment: {json.dumps(env, indent=1)}"
    )
    return json.loads(result.stdout)


def flatten(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, keys in settings.items()
        for key, value in keys.items()
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"node exited with {process.returncode} before listening:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Node:
    """The real node binary, started with a given environment on a free port."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.env = {
            **base_env(),
            **env,
            "VC_SERVER__HOST": "127.0.0.1",
            "VC_SERVER__PORT": str(self.port),
        }
        # A separate metrics listener moves to a free port of its own too.
        self.metrics_port = None
        if self.env.get("VC_SERVER__METRICS_ADDRESS"):
            self.metrics_port = free_port()
            self.env["VC_SERVER__METRICS_ADDRESS"] = f"127.0.0.1:{self.metrics_port}"
        self.process = subprocess.Popen(
            [str(node_binary()), "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        return http_get(self.port, path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def ice_servers_from_a_join(node: "Node") -> list[dict[str, Any]]:
    """Joins a room on a running node over a real WebSocket and returns the
    iceServers its `joined` hands the browser, TURN credentials included."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{node.port}/ws", open_timeout=5) as ws:
        welcome = json.loads(ws.recv(timeout=5))
        assert welcome["type"] == "welcome", welcome
        ws.send(json.dumps({"type": "join", "id": 1, "room": "turn-check", "name": "Checker"}))
        joined = json.loads(ws.recv(timeout=5))
        assert joined["type"] == "joined", joined
        return joined["iceServers"]


class TurnServer:
    """Debian's coturn (turnserver) with a given command line, on loopback only."""

    def __init__(self, args: list[str], port: int, log: Path):
        self.port = port
        self.log = log
        # Loopback only here: whatever the deployment listens on, nothing leaves the machine.
        self.process = subprocess.Popen(
            ["turnserver", *args, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"],
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"turnserver exited with {self.process.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"turnserver does not listen on {port}:\n{log.read_text()}"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def turn_allocate(
    port: int, username: str, password: str, transport: str = "udp", peer: tuple[str, int] | None = None
) -> tuple[str, int]:
    """A TURN allocation on 127.0.0.1:port with long-term credentials (aioice's
    TURN client protocol): returns the relayed address, or raises what the
    server answered (aioice.stun.TransactionFailed with its error code). With
    `peer`, also binds a channel to it, which needs the server's permission."""
    import asyncio

    from aioice import turn

    server = ("127.0.0.1", port)
    options = {"username": username, "password": password, "lifetime": 60, "channel_refresh_time": 60}

    async def run() -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if transport == "tcp":
            inner, protocol = await loop.create_connection(
                lambda: turn.TurnClientTcpProtocol(server, **options), *server
            )
        else:
            inner, protocol = await loop.create_datagram_endpoint(
                lambda: turn.TurnClientUdpProtocol(server, **options), remote_addr=server
            )
        try:
            relayed = await protocol.connect()
            if peer is not None:
                await protocol.channel_bind(0x4000, peer)
            await protocol.delete()
            return relayed
        finally:
            inner.close()

    return asyncio.run(asyncio.wait_for(run(), 10))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """A plain closing count, whatever pytest's own line looks like."""
    stats = terminalreporter.stats
    count = lambda *keys: sum(len(stats.get(k, [])) for k in keys)  # noqa: E731
    passed, failed, skipped = count("passed"), count("failed", "error"), count("skipped")
    terminalreporter.write_line(f"deploy: {passed} passed, {failed} failed, {skipped} skipped")
