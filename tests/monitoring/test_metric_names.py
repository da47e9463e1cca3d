"""Every metric the rules and the dashboard use is one the edge or the hub really exports, with
the labels they match on; and the hub's device, review-queue and ingest-lag figures are right.

The exported names come from the edge's and the hub's metrics objects and from the /metrics page
of a running hub that has stored messages (histogram _bucket/_sum/_count and counter _total
samples included). The labels a selector may use are the metric's own plus those Prometheus
attaches per scrape job in monitoring/prometheus/prometheus.yml (job, instance, device).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from monitoring_support import (
    DASHBOARD,
    Exported,
    RunningHub,
    fed_messages,
    feed,
    load_rules,
    target_labels,
)
from promql_names import (
    Selector,
    counter_arguments,
    gauge_arguments,
    selectors,
    template_query,
)

from waferscope.hub.metrics import DEGRADED_REASONS, DEVICE_STATES
from waferscope.protocols.topics import TopicKind

EDGE_JOB = "waferscope-edge"
HUB_JOB = "waferscope-hub"


def rule_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], str(r["expr"])) for r in load_rules()]


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = [
        (f"panel {p['title']!r}", t["expr"]) for p in dash["panels"] for t in p.get("targets") or []
    ]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            expr, _ = template_query(query)
            if expr:
                out.append((f"variable {var['name']}", expr))
    return out


RECORDED = {r["record"] for r in load_rules() if "record" in r}


@pytest.fixture
def exported(edge_exported: Exported, hub_exported: Exported) -> dict[str, set[str]]:
    """Sample name -> labels a query may match on (own labels plus the scrape job's)."""
    jobs = target_labels()
    out: dict[str, set[str]] = {}
    for name, labels in edge_exported.labels.items():
        out[name] = labels | jobs[EDGE_JOB]
    for name, labels in hub_exported.labels.items():
        out[name] = labels | jobs[HUB_JOB]
    out["up"] = jobs[EDGE_JOB] | jobs[HUB_JOB]
    return out


def _check(where: str, sel: Selector, exported: dict[str, set[str]]) -> list[str]:
    if sel.name in RECORDED:
        return []
    if sel.name not in exported:
        return [f"{where}: {sel.name} is not exported by the edge or the hub"]
    own = exported[sel.name] | {"__name__"}
    bad = [m.label for m in sel.matchers if m.label not in own]
    return [f"{where}: {sel.name} has no label {label!r}" for label in bad]


@pytest.mark.parametrize("source", [rule_exprs, dashboard_exprs], ids=["alert rules", "dashboard"])
def test_every_metric_used_is_exported(source, exported: dict[str, set[str]]) -> None:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    used: set[str] = set()
    for where, expr in source():
        sels = selectors(expr)
        assert sels, f"{where}: no metric in {expr!r}"
        for sel in sels:
            assert sel.name, f"{where}: a selector without a metric name"
            used.add(sel.name)
            problems += _check(where, sel, exported)
    assert problems == []
    assert any(n.startswith("waferscope_edge_") for n in used)
    assert any(n.startswith("waferscope_hub_") for n in used)


@pytest.mark.parametrize("source", [rule_exprs, dashboard_exprs], ids=["alert rules", "dashboard"])
def test_functions_get_the_right_metric_types(  # type: ignore[no-untyped-def]
    source, edge_exported: Exported, hub_exported: Exported
) -> None:
    types = {**edge_exported.types, **hub_exported.types}
    for where, expr in source():
        for name in counter_arguments(expr):
            assert types.get(name) in ("counter", "histogram"), f"{where}: rate() etc. on {name}"
            assert re.search(r"_(total|bucket|count|sum)$", name), f"{where}: {name}"
        for name in gauge_arguments(expr):
            assert types.get(name) == "gauge", f"{where}: deriv() etc. on {name}"


KNOWN_VALUES = {
    ("waferscope_hub_device_state", "state"): set(DEVICE_STATES),
    ("waferscope_hub_device_degraded", "reason"): set(DEGRADED_REASONS),
    ("waferscope_hub_ingest_stored_total", "kind"): {"result", "alert"},
    ("waferscope_hub_ingest_malformed_total", "kind"): {k.value for k in TopicKind}
    | {"unknown", "store"},
    ("waferscope_hub_notify_attempts_total", "outcome"): {"delivered", "retry", "failed"},
    ("waferscope_edge_published_total", "kind"): {"result", "alert"},
    ("waferscope_edge_wafers_total", "review"): {"true", "false"},
}


def test_matched_label_values_are_ones_the_code_writes() -> None:
    for where, expr in rule_exprs() + dashboard_exprs():
        for sel in selectors(expr):
            for m in sel.matchers:
                known = KNOWN_VALUES.get((sel.name, m.label))
                if known is None or m.op != "=":
                    continue
                assert m.value in known, f"{where}: {sel.name}{{{m.label}={m.value!r}}}"
    for where, expr in rule_exprs():
        for sel in selectors(expr):
            for m in sel.matchers:
                if m.label == "job":
                    assert m.value in target_labels(), f"{where}: unknown job {m.value!r}"


# --------------------------------------------------------------------------- the hub's new figures
def _value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_hub_reports_devices_review_queue_and_ingest_lag(running_hub: RunningHub) -> None:
    from waferscope.protocols.pb import device_pb2

    before = running_hub.scrape()
    assert "waferscope_hub_device_state{" not in before  # no device yet
    assert _value(before, "waferscope_hub_review_queue_open", reason="low_confidence") == 0
    assert _value(before, "waferscope_hub_ingest_lag_seconds_count") == 0

    feed(running_hub.hub, *fed_messages("edge-t01", classified_ago_s=42.0))
    text = running_hub.scrape()
    dev = {"device": "edge-t01"}
    for state in DEVICE_STATES:
        expected = 1.0 if state == "degraded" else 0.0
        assert _value(text, "waferscope_hub_device_state", **dev, state=state) == expected
    assert _value(text, "waferscope_hub_device_degraded", **dev, reason="store_full") == 1
    assert _value(text, "waferscope_hub_device_degraded", **dev, reason="model_refused") == 0
    assert _value(text, "waferscope_hub_device_outbox_depth", **dev) == 17
    seen = _value(text, "waferscope_hub_device_last_seen_timestamp_seconds", **dev)
    assert abs(seen - datetime.now(UTC).timestamp()) < 60
    # one result went to review (confidence 0.3), the other did not
    assert _value(text, "waferscope_hub_review_queue_open", reason="low_confidence") == 1
    # both results were classified 42 s before the commit
    assert _value(text, "waferscope_hub_ingest_lag_seconds_count") == 2
    lag_sum = _value(text, "waferscope_hub_ingest_lag_seconds_sum")
    assert 2 * 42 <= lag_sum < 2 * 42 + 30
    assert _value(text, "waferscope_hub_ingest_lag_seconds_bucket", le="30.0") == 0
    assert _value(text, "waferscope_hub_ingest_lag_seconds_bucket", le="60.0") == 2

    # a redelivery is no new result: no second observation
    msgs = fed_messages("edge-t01")
    feed(running_hub.hub, *msgs)
    feed(running_hub.hub, *msgs)
    assert _value(running_hub.scrape(), "waferscope_hub_ingest_lag_seconds_count") == 4

    # the broker's last will: offline, and the stored reasons no longer count as current
    will = device_pb2.DeviceStatus(
        schema_version=1,
        device_id="edge-t01",
        connection_id="c-1",
        state=device_pb2.DEVICE_STATE_OFFLINE,
        cause=device_pb2.STATUS_CAUSE_LAST_WILL,
    )
    feed(running_hub.hub, will)
    text = running_hub.scrape()
    assert _value(text, "waferscope_hub_device_state", **dev, state="offline") == 1
    assert _value(text, "waferscope_hub_device_state", **dev, state="degraded") == 0
    assert _value(text, "waferscope_hub_device_degraded", **dev, reason="store_full") == 0


def test_hub_metrics_survive_an_unreadable_database() -> None:
    """A failing read leaves the device figures out; the rest of the page still renders."""
    from waferscope.hub.metrics import HubMetrics

    m = HubMetrics()

    def broken():  # type: ignore[no-untyped-def]
        raise RuntimeError("database is away")

    m.bind_state(broken)
    text = m.render().decode()
    assert "waferscope_hub_ingest_messages_total" in text or "waferscope_hub_ingest_lag" in text
    assert "waferscope_hub_device_state" not in text


def test_ingest_lag_counts_clock_skew_as_zero() -> None:
    from datetime import timedelta

    from waferscope.hub.metrics import HubMetrics

    m = HubMetrics()
    now = datetime(2026, 1, 1, 12, 0, 0)
    m.observe_ingest_lag([now - timedelta(seconds=5), now + timedelta(seconds=3)], now)
    text = m.render().decode()
    assert _value(text, "waferscope_hub_ingest_lag_seconds_count") == 2
    assert _value(text, "waferscope_hub_ingest_lag_seconds_sum") == 5
