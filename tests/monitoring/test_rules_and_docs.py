"""The alert rules' shape: every alert waits (`for:`), has a severity, a summary, a description
and a runbook_url whose anchor exists in docs/observability.md; every alert is unit-tested firing
and quiet, every recording rule is unit-tested."""

from __future__ import annotations

import re

import pytest
import yaml
from monitoring_support import OBSERVABILITY_DOC, RULE_TESTS, load_rules

SEVERITIES = {"critical", "warning", "info"}

ALERTS = [r for r in load_rules() if "alert" in r]
RECORDS = [r for r in load_rules() if "record" in r]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_anchors() -> set[str]:
    text = OBSERVABILITY_DOC.read_text(encoding="utf-8")
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*$", text, re.M)}
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    return anchors


def unit_tests() -> list[dict]:  # type: ignore[type-arg]
    return [t for path in RULE_TESTS for t in yaml.safe_load(path.read_text())["tests"]]


def test_the_required_alerts_exist() -> None:
    names = {r["alert"] for r in ALERTS}
    for needed in (
        "WaferscopeEdgeDown",  # edge offline: scrape target down
        "WaferscopeEdgeOffline",  # edge offline: the hub's view
        "WaferscopeEdgeOutboxGrowing",
        "WaferscopeHubIngestLagHigh",
        "WaferscopeEdgeHubLinkDown",
        "WaferscopeEdgeAlertStorm",
        "WaferscopeAlertStorm",
        "WaferscopeEdgeStoreFull",
        "WaferscopeEdgeModelRefused",
    ):
        assert needed in names
    assert len(names) == len(ALERTS), "alert names must be unique"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_alert_shape(rule: dict) -> None:  # type: ignore[type-arg]
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), "every alert needs a for:"
    assert rule["labels"]["severity"] in SEVERITIES
    ann = rule["annotations"]
    assert ann["summary"].strip() and ann["description"].strip()
    url = ann["runbook_url"]
    assert url.startswith("docs/observability.md#"), url
    anchor = url.split("#", 1)[1]
    assert anchor == rule["alert"].lower()
    assert anchor in doc_anchors(), f"docs/observability.md has no heading for #{anchor}"


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in ALERTS}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_every_recording_rule_is_unit_tested() -> None:
    exprs = " ".join(
        case["expr"] for test in unit_tests() for case in test.get("promql_expr_test", [])
    )
    for rule in RECORDS:
        assert rule["record"] in exprs, rule["record"]


def test_metrics_section_lists_every_exported_name(hub_exported, edge_exported) -> None:  # type: ignore[no-untyped-def]
    """docs/observability.md's Metrics section names each family the edge and hub export."""
    text = OBSERVABILITY_DOC.read_text(encoding="utf-8")
    families = {
        re.sub(r"_(total|created|bucket|sum|count|info)$", "", name)
        for exported in (hub_exported, edge_exported)
        for name in exported.labels
        if name.startswith("waferscope_")
    }
    missing = sorted(f for f in families if f not in text)
    assert missing == []
