"""Prometheus alert rules and the Grafana dashboard: well formed, and about metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy.conftest import deploy_files, ids
from tests.support.cli import REPO
from tests.support.markdown import anchors
from tests.support.metrics import exported_names

RULE_FILES = deploy_files("prometheus", ".yaml", ".yml")
DASHBOARDS = deploy_files("grafana", ".json")
_METRIC = re.compile(r"\bmeshward_[a-z0-9_]+\b")
_DURATION = re.compile(r"^\d+[smhdwy]$")


def metric_names_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    return metric_names_in(expr) - known


def _balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1, "[": 1, "]": -1, "{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _rules(path: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert set(group) <= {"name", "rules", "interval", "limit", "labels"}
        assert group["name"] and group["rules"]
        rules.extend(group["rules"])
    return rules


def test_alert_rules_exist() -> None:
    assert RULE_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=ids(RULE_FILES))
def test_alert_rules_are_complete(path: Path) -> None:
    known = exported_names()
    names = []
    for rule in _rules(path):
        assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                             "annotations"}  # fmt: skip
        assert "alert" in rule, "recording rules belong in a separate file"
        names.append(rule["alert"])
        assert re.fullmatch(r"Meshward[A-Z][A-Za-z]+", rule["alert"])
        expr = str(rule["expr"])
        assert _balanced(expr), f"{rule['alert']}: unbalanced brackets"
        assert metric_names_in(expr), f"{rule['alert']}: uses no meshward metric"
        assert not unknown_metrics(expr, known), f"{rule['alert']}: {unknown_metrics(expr, known)}"
        if "for" in rule:
            assert _DURATION.match(str(rule["for"]))
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"]
        runbook = annotations["runbook"]
        page, _, anchor = runbook.partition("#")
        assert (REPO / page).is_file(), runbook
        assert not anchor or anchor in anchors(REPO / page), runbook
    assert len(names) == len(set(names)), "duplicate alert names"


def test_signing_ca_expiry_has_an_alert() -> None:
    exprs = [str(r["expr"]) for p in RULE_FILES for r in _rules(p)]
    assert any("meshward_ca_signing_ca_not_after" in e for e in exprs)


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        for inner in panel.get("panels", [panel]):
            out.extend(inner.get("targets", []))
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=ids(DASHBOARDS))
def test_dashboard_is_grafana_json_about_defined_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["type"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
    known = exported_names()
    targets = _targets(dashboard)
    assert targets
    used: set[str] = set()
    for target in targets:
        assert _balanced(target["expr"]), target["expr"]
        assert not unknown_metrics(target["expr"], known), target["expr"]
        used |= metric_names_in(target["expr"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for target in targets:
        for ref in re.findall(r"\$(\w+)", target["expr"]):
            assert ref.startswith("__") or ref in variables, ref


def test_dashboard_shows_every_decision_and_issuance_metric() -> None:
    used = set()
    for path in DASHBOARDS:
        for target in _targets(json.loads(path.read_text(encoding="utf-8"))):
            used |= metric_names_in(target["expr"])
    assert {
        "meshward_pdp_decisions_total",
        "meshward_pdp_decision_seconds_bucket",
        "meshward_ca_issuance_total",
        "meshward_ca_signing_ca_not_after_seconds",
    } <= used


def test_unknown_metric_is_caught() -> None:
    assert unknown_metrics("rate(meshward_no_such_metric_total[5m])", exported_names())
