"""values.schema.json: accepts the shipped values, refuses bad ones.

Each bad value is fed both to the jsonschema library and to Helm itself (the
same check `helm install` runs), so the schema is known to work where it matters.
"""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from conftest import CHART, production_values

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def merged(values):
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


def helm_accepts(values) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)


def test_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", ["defaults", "production"])
def test_shipped_values_are_accepted(name):
    values = {} if name == "defaults" else production_values()
    jsonschema.validate(merged(values), SCHEMA)
    helm_accepts(values)


BAD_VALUES = {
    "typo in a setting": {"settings": {"rooms": {"capcity": 4}}},
    "unknown settings section": {"settings": {"room": {"capacity": 4}}},
    "room capacity below 2": {"settings": {"rooms": {"capacity": 1}}},
    "room capacity above 64": {"settings": {"rooms": {"capacity": 65}}},
    "auth mode unknown": {"settings": {"auth": {"mode": "ldap"}}},
    "duration without unit": {"settings": {"drain": {"timeout": "30"}}},
    "duration in words": {"settings": {"drain": {"timeout": "30 seconds"}}},
    "duration as a number": {"settings": {"resume": {"window": 10}}},
    "stun URL of the wrong scheme": {"settings": {"ice": {"stun_urls": ["https://stun.example.com"]}}},
    "turn URLs as one string": {"settings": {"ice": {"turn_urls": "turn:a:3478,turn:b:3478"}}},
    "comma inside a list item": {"settings": {"ice": {"stun_urls": ["stun:a:3478,stun:b:3478"]}}},
    "log format unknown": {"settings": {"telemetry": {"log_format": "xml"}}},
    "chart-owned port set as a setting": {"settings": {"server": {"port": 9000}}},
    "chart-owned node id set as a setting": {"settings": {"node": {"id": "n1"}}},
    "secret set as a plain setting": {"settings": {"auth": {"jwt_secret": "x" * 40}}},
    "redis URL of the wrong scheme": {"redis": {"url": "http://redis:6379"}},
    "replica count as a string": {"replicaCount": "3"},
    "negative replica count": {"replicaCount": -1},
    "privileged container port": {"containerPort": 80},
    "pull policy unknown": {"image": {"pullPolicy": "Sometimes"}},
    "digest not sha256": {"image": {"digest": "md5:abc"}},
    "service type unknown": {"service": {"type": "Ingress"}},
    "nodePort out of range": {"service": {"type": "NodePort", "nodePort": 80}},
    "HPA minimum zero": {"autoscaling": {"minReplicas": 0}},
    "CPU target as a string": {"autoscaling": {"targetCPUUtilizationPercentage": "70%"}},
    "sessions per pod not a quantity": {"autoscaling": {"sessionsPerPod": {"averageValue": "lots"}}},
    "PDB as a fraction": {"podDisruptionBudget": {"maxUnavailable": "0.5"}},
    "spread policy unknown": {"topologySpread": {"zoneWhenUnsatisfiable": "Maybe"}},
    "ingress path without slash": {"ingress": {"hosts": [{"host": "a", "paths": [{"path": "ws"}]}]}},
    "ingress path type unknown": {"ingress": {"hosts": [{"paths": [{"path": "/", "pathType": "Regex"}]}]}},
    "unknown top-level key": {"replicas": 3},
    "preStop sleep too long": {"lifecycle": {"preStopSleepSeconds": 3600}},
    "scrape interval not a duration": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "extra env without a name": {"extraEnv": [{"value": "x"}]},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused(case):
    values = BAD_VALUES[case]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged(values), SCHEMA)
    with pytest.raises(helm.HelmValuesError):
        helm_accepts(values)


def test_good_edge_values_are_accepted():
    for values in (
        {"settings": {"rooms": {"capacity": 64}, "drain": {"timeout": "2m"}, "server": {"shutdown_timeout": "1500ms"}}},
        {"settings": {"ice": {"stun_urls": ["stun:a:3478", "stuns:b:5349"], "turn_urls": ["turns:t:5349?transport=tcp"]}}},
        {"settings": {"limits": {"messages_per_second": 12.5}}},
        {"podDisruptionBudget": {"maxUnavailable": "25%"}},
        {"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 2}},
        {"image": {"digest": "sha256:" + "a" * 64}},
        {"lifecycle": {"terminationGracePeriodSeconds": 120}},
    ):
        jsonschema.validate(merged(values), SCHEMA)
        helm_accepts(values)


def test_the_kubernetes_validator_does_reject_broken_objects():
    """A control for test_chart: the validator is strict and really runs."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    unknown_field = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"sessionAffinty": "None"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown_field, kubernetes_validate.latest_version(), strict=True)
