"""The chart's copies of the dashboards and alert rules (helm/sync-assets.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CHART, REPO

PAIRS = [
    (REPO / "deploy" / "grafana" / "dashboards", CHART / "dashboards", ("*.json",)),
    (REPO / "deploy" / "prometheus" / "rules", CHART / "rules", ("*.yml", "*.yaml")),
]


def files(directory: Path, patterns) -> dict[str, bytes]:
    found = {}
    for pattern in patterns:
        for f in directory.glob(pattern):
            found[f.name] = f.read_bytes()
    return found


@pytest.mark.parametrize("source, copy, patterns", PAIRS, ids=["dashboards", "rules"])
def test_chart_copies_match_deploy(source: Path, copy: Path, patterns):
    if not source.is_dir() or not files(source, patterns):
        pytest.skip(f"{source.relative_to(REPO)} has no files yet")
    assert files(copy, patterns) == files(source, patterns), (
        f"{copy.relative_to(REPO)} differs from {source.relative_to(REPO)}: run helm/sync-assets.sh"
    )


def test_sync_script_check_mode_agrees():
    result = subprocess.run(["bash", str(REPO / "helm" / "sync-assets.sh"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_dashboards_and_rules_parse():
    for f in (CHART / "dashboards").glob("*.json"):
        dashboard = json.loads(f.read_text())
        assert "title" in dashboard, f
    for pattern in ("*.yml", "*.yaml"):
        for f in (CHART / "rules").glob(pattern):
            doc = yaml.safe_load(f.read_text())
            assert isinstance(doc.get("groups"), list), f
            for group in doc["groups"]:
                assert group["name"] and isinstance(group["rules"], list), f


def test_sync_script_copies_and_prunes(tmp_path: Path):
    """The script in a scratch repository: copies new files, removes stale copies,
    and --check reports both."""
    (tmp_path / "helm" / "video-caller" / "dashboards").mkdir(parents=True)
    (tmp_path / "helm" / "video-caller" / "rules").mkdir(parents=True)
    shutil.copy(REPO / "helm" / "sync-assets.sh", tmp_path / "helm" / "sync-assets.sh")
    dashboards = tmp_path / "deploy" / "grafana" / "dashboards"
    rules = tmp_path / "deploy" / "prometheus" / "rules"
    dashboards.mkdir(parents=True)
    rules.mkdir(parents=True)
    (dashboards / "overview.json").write_text('{"title": "Overview"}\n')
    (rules / "alerts.yml").write_text("groups: []\n")
    (tmp_path / "helm" / "video-caller" / "rules" / "old.yml").write_text("groups: []\n")
    script = ["bash", str(tmp_path / "helm" / "sync-assets.sh")]

    check = subprocess.run([*script, "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "overview.json" in check.stdout and "old.yml" in check.stdout

    subprocess.run(script, check=True, capture_output=True)
    chart = tmp_path / "helm" / "video-caller"
    assert (chart / "dashboards" / "overview.json").read_text() == '{"title": "Overview"}\n'
    assert (chart / "rules" / "alerts.yml").exists()
    assert not (chart / "rules" / "old.yml").exists()
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 0

    (dashboards / "overview.json").write_text('{"title": "Overview v2"}\n')
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 1
