"""Hostile lot ids, programs and file names from the hot folder render as text in the edge panel.

A real agent classifies tester files (E142, written from real wafers) whose lot id, wafer id
and program are HTML/JS, plus an unreadable file whose name is HTML (its parse-failure alert
names it); the panel's pages in headless Chromium must show them as text only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from edge_test_support import Broker, agent_toml, drop, wafer_bytes, wait_for
from hostile import IMG_ONERROR, PAYLOADS, SCRIPT_TAG, SVG_ONLOAD, assert_rendered_as_text
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config
from waferscope.protocols.wafermap import WaferInfo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING),
]
RULES = """
[[alerts.rules]]
kind = "parse_failure"
id = "parse-failure"
severity = "error"
"""
HOSTILE_FILE = "<img src=x id=pwned-img onerror=alert(9)>.xml"


@pytest.fixture
def hostile_agent(
    tmp_path: Path, bundle_dir: Path, broker: Broker, val_npz: Path
) -> Iterator[Wiring]:
    w = build_agent(
        load_config(
            agent_toml(tmp_path, bundle_dir, broker.port, RULES, panel=True), environ={}
        ).config
    )
    w.agent.start()
    incoming = w.config.ingest.hot_folder.path
    assert incoming is not None
    for i, wafer in enumerate(dataset_wafers(val_npz, len(PAYLOADS))):
        info = WaferInfo(
            lot_id=PAYLOADS[i],
            wafer_id=PAYLOADS[(i + 1) % len(PAYLOADS)],
            program=PAYLOADS[(i + 2) % len(PAYLOADS)],
            tester_id="T-01",
        )
        drop(incoming, f"h{i}.xml", wafer_bytes(wafer.with_(info=info)))
    drop(incoming, HOSTILE_FILE, b"<?xml version='1.0'?><Map><oops")
    wait_for(lambda: w.store.counts()["results"] == len(PAYLOADS), 60, what="results")
    wait_for(lambda: len(w.store.alerts()) >= 1, 20, what="the parse-failure alert")
    yield w
    w.agent.stop()


def test_hostile_strings_render_as_text_in_the_panel(hostile_agent: Wiring) -> None:
    w = hostile_agent
    root = f"http://127.0.0.1:{w.panel.port}"  # type: ignore[union-attr]
    stored = w.store.recent_results(limit=50)
    lots = {r["lot_id"] for r in stored}
    assert {SCRIPT_TAG, IMG_ONERROR, SVG_ONLOAD} <= lots  # stored unchanged, shown as text
    with chromium() as d:
        d.get(root + "/")
        wait_for(lambda: ready(d), 10, what="the panel")
        assert_rendered_as_text(d, "index", (HOSTILE_FILE, SCRIPT_TAG, IMG_ONERROR))
        for row in stored:
            d.get(f"{root}/wafers/{row['result_id']}")
            wait_for(lambda: ready(d), 10, what="wafer page")
            assert_rendered_as_text(d, f"wafer {row['result_id']}", ())
        d.get(root + "/alerts")
        wait_for(lambda: ready(d), 10, what="alerts")
        assert_rendered_as_text(d, "alerts", (HOSTILE_FILE,))
