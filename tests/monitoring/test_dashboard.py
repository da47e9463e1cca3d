"""The Grafana dashboard: valid JSON of a recent schema, a Prometheus data-source variable that
every panel and target uses, a `device` variable that every edge query honours, and the panels
the appliance needs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from monitoring_support import DASHBOARD, target_labels
from promql_names import selectors, template_query

DS_UID = "${DS_PROMETHEUS}"


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])  # a collapsed row keeps its panels inside
    return [p for p in out if p["type"] != "row"]


def test_schema_and_identity(dash: dict[str, Any]) -> None:
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    ids += [q["id"] for p in dash["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_variables(dash: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    device = variables["device"]
    assert device["type"] == "query" and device["datasource"]["uid"] == DS_UID
    assert device["multi"] and device["includeAll"] and device["allValue"] == ".*"
    expr, label = template_query(device["query"]["query"])
    assert label == "device" and expr
    # the label comes from the edge scrape job's targets
    assert "device" in target_labels()["waferscope-edge"]
    assert selectors(expr)[0].name.startswith("waferscope_edge_")


def test_every_panel_has_a_datasource_and_targets(dash: dict[str, Any]) -> None:
    ps = panels(dash)
    assert len(ps) >= 12
    for p in ps:
        assert p["datasource"] == {"type": "prometheus", "uid": DS_UID}, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", p["datasource"])["uid"] == DS_UID, p["title"]
        assert p["title"].strip() and p.get("description", "").strip(), p["title"]


def test_layout_fits_the_grid(dash: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        mine = {(x, y) for x in xs for y in ys}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_edge_queries_follow_the_device_variable(dash: dict[str, Any]) -> None:
    for p in panels(dash):
        for t in p["targets"]:
            for sel in selectors(t["expr"]):
                if sel.name.startswith("waferscope_edge_") or sel.name.startswith(
                    "waferscope_hub_device_"
                ):
                    assert any(m.label == "device" and m.value == "var" for m in sel.matchers), (
                        f"{p['title']}: {sel.name} ignores $device"
                    )


def test_the_panels_the_appliance_needs(dash: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in panels(dash) for t in p["targets"])
    for needle in (
        "waferscope_edge_wafers_total",  # throughput, patterns by class
        "waferscope_edge_ingest_to_store_seconds_bucket",  # end-to-end latency
        "waferscope_edge_stage_seconds_bucket",  # stage latency
        "waferscope_edge_outbox_depth",
        "waferscope_edge_hub_connected",  # link state
        "waferscope_hub_ingest_stored_total",  # ingest rate
        "waferscope_hub_ingest_lag_seconds_bucket",  # ingest lag
        "waferscope_hub_review_queue_open",
        "waferscope_edge_alerts_total",  # alerts by rule
        "waferscope_hub_rule_alerts_total",
        "sum by (pattern)",
    ):
        assert needle in exprs, needle
