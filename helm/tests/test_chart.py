"""The Helm chart: lint, render, Kubernetes schemas and what an operator relies on."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    find,
    node_container,
    objects,
    one,
    production_values,
    render,
    signaling_deployment,
)

# The newest Kubernetes the validator ships schemas for, and the oldest the
# chart supports (Chart.yaml kubeVersion).
KUBE_LATEST = latest_version()
KUBE_OLDEST = "1.30.0"
# Custom resources: no core schema; checked structurally below.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def everything_values() -> dict[str, Any]:
    """Production values plus every optional object the chart can make."""
    values = production_values()
    values["httpRoute"] = {
        "enabled": True,
        "parentRefs": [{"name": "public", "namespace": "gateway-system"}],
        "hostnames": ["call.example.com"],
        "timeouts": {"request": "0s"},
    }
    values["metrics"]["scrapeAnnotations"] = True
    values["coturn"] = {"enabled": True, "publicHost": "turn.example.com", "hostNetwork": False}
    return values


def evaluation_values() -> dict[str, Any]:
    """Two nodes on the in-chart Redis, with JWT and TURN secrets from values."""
    return {
        "replicaCount": 2,
        "redis": {"internal": {"enabled": True}},
        "settings": {
            "auth": {"mode": "jwt"},
            "ice": {"turn_urls": ["turn:turn.example.com:3478"]},
        },
        "secrets": {"jwtSecret": "x" * 40, "turnSecret": "turn"},
        "networkPolicy": {"enabled": True},
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
    }


CASES = {
    "default": {},
    "production": production_values(),
    "everything": everything_values(),
    "evaluation": evaluation_values(),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    values = copy.deepcopy(CASES[request.param])
    return request.param, values, objects(render(values))


@pytest.mark.parametrize("name", ["default", "production"])
def test_lint_is_clean(name):
    report = helm.lint(CHART, CASES[name], strict=True, kube_version=f"v{KUBE_LATEST}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_renders_with_defaults():
    objs = objects(render({}))
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ], kinds
    assert signaling_deployment(objs)["spec"]["replicas"] == 1


def test_production_values_render_the_fleet():
    values = production_values()
    objs = objects(render(values))
    kinds = {o["kind"] for o in objs}
    for kind in (
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "ConfigMap",
        "NetworkPolicy",
    ):
        assert kind in kinds, f"{kind} missing from the production render"
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 3
    assert "replicas" not in signaling_deployment(objs)["spec"], "the HPA owns replicas"
    env = {e["name"]: e for e in node_container(signaling_deployment(objs))["env"]}
    assert env["VC_REDIS__URL"]["valueFrom"]["secretKeyRef"]["name"] == values["redis"]["existingSecret"]
    assert not find(objs, "Secret"), "every secret comes from existing Secrets"


def test_every_object_validates_against_kubernetes_schemas(case):
    name, _, objs = case
    for version in (KUBE_OLDEST, KUBE_LATEST):
        for obj in objs:
            if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"[{name}] {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {e}")


def test_only_known_kinds_are_rendered(case):
    _, _, objs = case
    for obj in objs:
        api_kind = (obj["apiVersion"], obj["kind"])
        if api_kind in CUSTOM_KINDS:
            continue
        # Must be a core kind the validator knows (raises SchemaNotFoundError otherwise).
        kubernetes_validate.validate(obj, KUBE_LATEST, strict=True)


def test_custom_resources_are_well_formed():
    values = everything_values()
    objs = objects(render(values))
    sm = one(objs, "ServiceMonitor")
    svc = one(objs, "Service", f"{RELEASE}-video-caller")
    selector = sm["spec"]["selector"]["matchLabels"]
    assert selector.items() <= svc["metadata"]["labels"].items(), "ServiceMonitor must select the Service"
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": "video-caller", "action": "replace"} in endpoint["relabelings"]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    route = one(objs, "HTTPRoute")
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"] in {p["port"] for p in svc["spec"]["ports"]}
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]


def test_recommended_labels_and_selectors(case):
    name, _, objs = case
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        for label in RECOMMENDED_LABELS:
            assert label in labels, f"[{name}] {obj['kind']}/{obj['metadata']['name']} lacks {label}"
        assert obj["metadata"].get("namespace") == NAMESPACE
    services = find(objs, "Service")
    workloads = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in find(objs, "Deployment")
    }
    for svc in services:
        component = svc["spec"]["selector"]["app.kubernetes.io/component"]
        pod_labels = workloads[component]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
    for d in find(objs, "Deployment"):
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        # Selectors must not carry labels that change between releases.
        assert "app.kubernetes.io/version" not in d["spec"]["selector"]["matchLabels"]
    for pdb in find(objs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"] == signaling_deployment(objs)["spec"]["selector"]


def test_pods_are_locked_down(case):
    name, _, objs = case
    for d in find(objs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
            assert {"livenessProbe", "readinessProbe"} <= c.keys()


def test_node_pods_spread_and_drain():
    objs = objects(render(production_values()))
    pod = signaling_deployment(objs)["spec"]["template"]["spec"]
    keys = {t["topologyKey"]: t for t in pod["topologySpreadConstraints"]}
    assert set(keys) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert keys["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule"
    container = node_container(signaling_deployment(objs))
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= container.keys()
    strategy = signaling_deployment(objs)["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_service_has_no_session_affinity(case):
    _, _, objs = case
    svc = one(objs, "Service", f"{RELEASE}-video-caller")
    assert svc["spec"]["sessionAffinity"] == "None"


def test_config_and_secret_changes_roll_the_pods():
    def annotations(values):
        return signaling_deployment(objects(render(values)))["spec"]["template"]["metadata"]["annotations"]

    base = evaluation_values()
    changed_setting = copy.deepcopy(base)
    changed_setting["settings"]["rooms"] = {"capacity": 4}
    changed_secret = copy.deepcopy(base)
    changed_secret["secrets"]["jwtSecret"] = "y" * 40
    a, b, c = annotations(base), annotations(changed_setting), annotations(changed_secret)
    assert a["checksum/config"] != b["checksum/config"]
    assert a["checksum/secret"] == b["checksum/secret"]
    assert a["checksum/secret"] != c["checksum/secret"]
    assert a["checksum/config"] == c["checksum/config"]


def test_grace_period_follows_the_drain_settings():
    def grace(values):
        return signaling_deployment(objects(render(values)))["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]

    assert grace({}) == 5 + 30 + 5 + 10
    assert grace({"settings": {"drain": {"timeout": "2m"}, "server": {"shutdown_timeout": "1500ms"}}}) == 5 + 120 + 2 + 10
    assert grace({"settings": {"drain": {"timeout": None}}}) == 5 + 30 + 5 + 10, "node default when left out"
    assert grace({"lifecycle": {"terminationGracePeriodSeconds": 90}}) == 90
    with pytest.raises(helm.HelmError, match="shorter than"):
        render({"lifecycle": {"terminationGracePeriodSeconds": 20}})


def test_secrets_from_values_are_stored_in_a_secret():
    objs = objects(render(evaluation_values()))
    secret = one(objs, "Secret")
    assert set(secret["data"]) == {"jwt-secret", "turn-secret"}
    env = {e["name"]: e for e in node_container(signaling_deployment(objs))["env"]}
    assert env["VC_AUTH__JWT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "jwt-secret",
    }
    redis_url = one(objs, "ConfigMap", f"{RELEASE}-video-caller")["data"]["VC_REDIS__URL"]
    redis_svc = one(objs, "Service", f"{RELEASE}-video-caller-redis")
    assert redis_url == f"redis://{redis_svc['metadata']['name']}:{redis_svc['spec']['ports'][0]['port']}/0"
    external = objects(render({"redis": {"url": "rediss://:pw@redis.example.com:6380/0"}, "replicaCount": 3}))
    assert one(external, "Secret")["data"] == {"redis-url": "cmVkaXNzOi8vOnB3QHJlZGlzLmV4YW1wbGUuY29tOjYzODAvMA=="}
    assert "VC_REDIS__URL" not in one(external, "ConfigMap")["data"], "a URL with a password stays out of the ConfigMap"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"replicaCount": 3}, "needs Redis"),
        ({"autoscaling": {"enabled": True}}, "needs Redis"),
        ({"settings": {"auth": {"mode": "jwt"}}}, "secrets.jwtSecret"),
        ({"settings": {"auth": {"mode": "jwt"}}, "secrets": {"jwtSecret": "too-short"}}, "at least 32 bytes"),
        ({"settings": {"ice": {"turn_urls": ["turn:t:3478"]}}}, "secrets.turnSecret"),
        ({"redis": {"url": "redis://r:6379", "internal": {"enabled": True}}}, "only one of"),
        ({"httpRoute": {"enabled": True}}, "parentRefs"),
        ({"podDisruptionBudget": {"maxUnavailable": None}}, "maxUnavailable or minAvailable"),
    ],
)
def test_broken_fleets_are_refused(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_dashboards_and_rules_are_shipped(tmp_path: Path):
    """With dashboards and rules in the chart (as helm/sync-assets.sh copies
    them), every dashboard becomes a sidecar ConfigMap and every rule group
    lands in the PrometheusRule, verbatim (no template evaluation)."""
    chart = tmp_path / "video-caller"
    shutil.copytree(CHART, chart)
    for d in ("dashboards", "rules"):
        for f in (chart / d).iterdir():
            f.unlink()
    (chart / "dashboards" / "Signaling Overview.json").write_text(
        '{"title": "Signaling overview", "uid": "vc-overview", "panels": [], "templating": {"list": []}}\n'
    )
    (chart / "dashboards" / "redis.json").write_text('{"title": "Redis bus", "uid": "vc-redis"}\n')
    (chart / "rules" / "signaling.yml").write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "vc-signaling",
                        "rules": [
                            {
                                "alert": "VcNodeNotReady",
                                "expr": 'up{job="vc-signaling"} == 0',
                                "for": "5m",
                                "labels": {"severity": "warning"},
                                "annotations": {"summary": "{{ $labels.pod }} is down"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    (chart / "rules" / "redis.yaml").write_text(
        "groups:\n  - name: vc-redis\n    rules:\n      - record: vc:bus_connected:min\n        expr: min(vc_bus_connected)\n"
    )
    values = production_values()
    objs = objects(render(values, chart_dir=chart))
    dashboards = [o for o in find(objs, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(o["metadata"]["name"] for o in dashboards) == [
        "vc-video-caller-dashboard-redis",
        "vc-video-caller-dashboard-signaling-overview",
    ]
    for o in dashboards:
        assert o["metadata"]["annotations"]["grafana_folder"] == "Video Caller"
        (key,) = o["data"]
        assert (chart / "dashboards" / key).read_text().strip() == o["data"][key].strip()
    rule = one(objs, "PrometheusRule")
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    assert set(groups) == {"vc-signaling", "vc-redis"}
    assert groups["vc-signaling"]["rules"][0]["annotations"]["summary"] == "{{ $labels.pod }} is down"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    report = helm.lint(chart, values, strict=True, kube_version=f"v{KUBE_LATEST}")
    assert not report["errors"], report


def test_empty_asset_folders_render_nothing(tmp_path: Path):
    """With no dashboards or rules copied yet, the flags render no empty objects."""
    chart = tmp_path / "video-caller"
    shutil.copytree(CHART, chart)
    for d in ("dashboards", "rules"):
        for f in (chart / d).iterdir():
            if f.name != ".gitkeep":
                f.unlink()
    values = production_values()
    objs = objects(render(values, chart_dir=chart))
    assert not find(objs, "PrometheusRule")
    assert not [o for o in find(objs, "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]]
    values["metrics"]["prometheusRule"]["additionalGroups"] = [
        {"name": "extra", "rules": [{"record": "vc:sessions:sum", "expr": "sum(vc_sessions)"}]}
    ]
    rule = one(objects(render(values, chart_dir=chart)), "PrometheusRule")
    assert [g["name"] for g in rule["spec"]["groups"]] == ["extra"]


def test_values_yaml_is_documented_line_by_line():
    """Every value in values.yaml has a comment right above it or above one of
    its enclosing blocks, so that `helm show values` is the reference."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of enclosing blocks
    undocumented = []
    previous = ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            previous = ""
            continue
        if stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            previous = stripped
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = previous.startswith("#") or any(d for _, d in stack)
        key, _, rest = stripped.partition(":")
        if rest.split(" #")[0].strip() == "":
            stack.append((indent, documented))
        elif not documented:
            undocumented.append(f"values.yaml:{number}: {key}")
        previous = stripped
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)


def test_notes_render_for_every_case(case):
    name, values, _ = case
    notes = render(values)["video-caller/templates/NOTES.txt"]
    assert "port-forward" in notes or "https://" in notes or "Gateway" in notes or "EXTERNAL-IP" in notes, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_rendered_prometheus_rules_pass_promtool(tmp_path: Path):
    """The PrometheusRule's groups, as the Operator hands them to Prometheus."""
    objs = objects(render(production_values()))
    rules = find(objs, "PrometheusRule")
    if not rules:
        pytest.skip("the chart ships no rules yet")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_configmaps_fit(case):
    """A ConfigMap holds at most 1 MiB."""
    _, _, objs = case
    for cm in find(objs, "ConfigMap"):
        size = sum(len(v.encode()) for v in cm.get("data", {}).values())
        assert size < 1024 * 1024, cm["metadata"]["name"]


def test_metrics_listener_is_wired_but_never_public(case):
    """/metrics has a listener of its own: a named container port, a Service
    port, the scrape annotations and ServiceMonitor point at it, and neither
    the Ingress nor the HTTPRoute routes to it."""
    name, values, objs = case
    metrics_port = values.get("metricsPort", 9090)
    container = node_container(signaling_deployment(objs))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == metrics_port and ports["http"] != metrics_port
    cm = one(objs, "ConfigMap", f"{RELEASE}-video-caller")
    assert cm["data"]["VC_SERVER__METRICS_ADDRESS"] == f"0.0.0.0:{metrics_port}"
    svc = one(objs, "Service", f"{RELEASE}-video-caller")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert svc_ports["metrics"]["targetPort"] == "metrics"
    annotations = signaling_deployment(objs)["spec"]["template"]["metadata"]["annotations"]
    if "prometheus.io/scrape" in annotations:
        assert annotations["prometheus.io/port"] == str(metrics_port)
    for sm in find(objs, "ServiceMonitor"):
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    for ingress in find(objs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}, path
    for route in find(objs, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                assert ref["port"] == svc_ports["http"]["port"] != svc_ports["metrics"]["port"]
    for policy in find(objs, "NetworkPolicy", f"{RELEASE}-video-caller"):
        (rule,) = policy["spec"]["ingress"]
        assert {p["port"] for p in rule["ports"]} == {"http", "metrics"}
        assert rule.get("from") == (values.get("networkPolicy", {}).get("ingressFrom") or None)


def test_metrics_port_must_differ_from_the_http_port():
    with pytest.raises(Exception, match="metricsPort must differ"):
        render({"metricsPort": 8080})


def origins_env(values: dict[str, Any]) -> str | None:
    cm = one(objects(render(values)), "ConfigMap", f"{RELEASE}-video-caller")
    return cm["data"].get("VC_SERVER__ALLOWED_ORIGINS")


def test_allowed_origins_follow_the_public_hosts():
    # No Ingress: the node's default (local pages only).
    assert origins_env({}) is None
    # The Ingress hosts, over https; never "*".
    assert origins_env(production_values()) == "https://call.example.com"
    assert origins_env(everything_values()) == "https://call.example.com"
    values = {
        "ingress": {"enabled": True, "hosts": [{"host": "a.example.com", "paths": [{"path": "/"}]}, {"host": "b.example.com", "paths": [{"path": "/"}]}]},
        "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}], "hostnames": ["c.example.com"]},
    }
    assert origins_env(values) == "https://a.example.com,https://b.example.com,https://c.example.com"
    # The operator's list wins, "*" included.
    values["settings"] = {"server": {"allowed_origins": ["https://app.example.org", "*"]}}
    assert origins_env(values) == "https://app.example.org,*"
