"""The operator panel in a real headless Chromium (Debian's chromium + chromedriver, selenium).

Screenshots are kept under test-artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import agent_toml
from edge_test_support import Broker, Subscriber, drop, wafer_bytes, wait_for
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

RULES = """
[[alerts.rules]]
kind = "parse_failure"
id = "parse-failure"
severity = "error"

[[alerts.rules]]
kind = "fail_density"
id = "fail-density"
threshold = 0.2
"""


@pytest.fixture
def panel_agent(
    tmp_path: Path, bundle_dir: Path, broker: Broker, val_npz: Path
) -> Iterator[Wiring]:
    w = build_agent(
        load_config(
            agent_toml(tmp_path, bundle_dir, broker.port, RULES, panel=True), environ={}
        ).config
    )
    w.agent.start()
    sub = Subscriber(broker.port)
    incoming = w.config.ingest.hot_folder.path
    assert incoming is not None
    wafers = list(dataset_wafers(val_npz, 400))
    chosen = [x for x in wafers if x.labels and x.labels[0] != "none"][:11]
    for i, wafer in enumerate(chosen):
        drop(incoming, f"p{i:02d}.xml", wafer_bytes(wafer))
    drop(incoming, "broken.xml", b"<?xml version='1.0'?><Map><oops")
    wait_for(lambda: w.store.counts()["results"] == 11, 60, what="11 results")
    wait_for(lambda: len(w.store.alerts()) >= 1, 20, what="an alert")
    wait_for(lambda: w.store.outbox_depth() == 0, 20, what="published")
    yield w
    sub.close()
    w.agent.stop()


def base(w: Wiring) -> str:
    assert w.panel is not None
    return f"http://127.0.0.1:{w.panel.port}"  # type: ignore[attr-defined]


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_json_api_metrics_and_health(panel_agent: Wiring) -> None:
    root = base(panel_agent)
    status, body, _ = get(f"{root}/healthz")
    assert status == 200 and body == b"ok"
    status, body, _ = get(f"{root}/readyz")
    assert status == 200 and json.loads(body)["ready"]
    status, body, ctype = get(f"{root}/metrics")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/plain")
    for name in (
        "waferscope_edge_wafers_total",
        'waferscope_edge_stage_seconds_bucket{le="0.005",stage="infer"}',
        "waferscope_edge_outbox_depth 0.0",
        'waferscope_edge_model_info{encoding="1"',
        "waferscope_edge_confidence_bucket",
        "waferscope_edge_ingest_to_store_seconds_count 11.0",
        'stage="publish"',
        "waferscope_edge_hub_connected 1.0",
    ):
        assert name in text, name
    wafers = json.loads(get(f"{root}/api/wafers?limit=5")[1])
    assert len(wafers) == 5 and wafers[0]["sequence"] == 11
    detail = json.loads(get(f"{root}/api/wafers/{wafers[0]['result_id']}")[1])
    assert detail["result"]["resultId"] == wafers[0]["result_id"]
    assert detail["result"]["heatmap"]["rows"] == 64
    st = json.loads(get(f"{root}/api/status")[1])
    assert st["hub_link"]["connected"] and st["model"]["version"] == "tiny-test-1"
    assert get(f"{root}/api/wafers/nope")[0] == 404
    alert = json.loads(get(f"{root}/api/alerts?active=true")[1])[0]
    req = urllib.request.Request(
        f"{root}/api/alerts/{alert['alert_id']}/ack",
        data=b'{"by": "shift-lead"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["changed"] is True
    acked = [
        a for a in json.loads(get(f"{root}/api/alerts")[1]) if a["alert_id"] == alert["alert_id"]
    ]
    assert acked[0]["acknowledged"] and acked[0]["acknowledged_by"] == "shift-lead"


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed",
)
def test_panel_in_headless_chromium(panel_agent: Wiring, artifacts_dir: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        root = base(panel_agent)
        driver.get(root + "/")
        cards = driver.find_elements(By.CSS_SELECTOR, ".wafers .card")
        assert len(cards) == 11
        assert "UP" in driver.find_element(By.ID, "hub-link").text
        assert "tiny-test-1" in driver.find_element(By.ID, "model").text
        wait_for(
            lambda: driver.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            ),
            20,
            what="thumbnails",
        )
        rows = driver.find_elements(By.CSS_SELECTOR, "table.alerts tr[data-alert-id]")
        assert rows, "the parse failure should be listed"
        driver.save_screenshot(str(artifacts_dir / "edge-panel-overview.png"))
        refresh = driver.find_element(By.CSS_SELECTOR, "meta[http-equiv=refresh]").get_attribute(
            "content"
        )
        assert refresh == "5"

        review = [c for c in cards if "REVIEW" in c.text]
        (review or cards)[0].click()
        wait_for(lambda: "/wafers/" in driver.current_url, 10, what="detail page")
        overlay = driver.find_element(By.ID, "overlay")
        wait_for(
            lambda: driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", overlay
            ),
            20,
            what="overlay",
        )
        text = driver.find_element(By.CSS_SELECTOR, ".facts").text
        assert "Pattern probabilities" in text and "Hot regions" in text and "Root cause" in text
        driver.save_screenshot(str(artifacts_dir / "edge-panel-wafer.png"))

        driver.get(root + "/")
        first = driver.find_element(By.CSS_SELECTOR, "table.alerts tr[data-alert-id]")
        alert_id = first.get_attribute("data-alert-id")
        first.find_element(By.CSS_SELECTOR, "button.ack").click()
        wait_for(
            lambda: not driver.find_elements(By.CSS_SELECTOR, f"tr[data-alert-id='{alert_id}']"),
            10,
            what="ack",
        )
        acked = [a for a in panel_agent.store.alerts() if a["alert_id"] == alert_id]
        assert acked[0]["acknowledged"] == 1 and acked[0]["acknowledged_by"] == "operator"
        driver.get(root + "/alerts")
        driver.save_screenshot(str(artifacts_dir / "edge-panel-alerts.png"))
        assert "acknowledged by operator" in driver.page_source
    finally:
        driver.quit()
    assert (artifacts_dir / "edge-panel-overview.png").stat().st_size > 10_000
    time.sleep(0)
