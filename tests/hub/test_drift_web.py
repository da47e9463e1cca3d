"""The drift API and the drift page (litestar test client, and a real headless Chromium)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from drift_data import DRIFT, stream
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, bearer, feed, hub_config
from litestar.testing import TestClient

from waferscope.hub.app import Hub
from waferscope.hub.db.engine import utcnow


@pytest.fixture
def drift_hub(tmp_path: Path, sqlite_url: str, data_dir: Path) -> Iterator[Hub]:
    hub = Hub(hub_config(tmp_path, sqlite_url, drift=DRIFT))
    add_role_users(hub)
    feed(hub, stream(data_dir, "edge-steady", drifting=False, offset=0))
    feed(hub, stream(data_dir, "edge-drift", drifting=True, offset=2000))
    now = utcnow()
    for hours in (3, 2, 1):  # a short history for the p-value/PSI chart
        hub.drift.run_once(now=now - timedelta(hours=hours))
    yield hub
    hub.stop()


def test_api_reports_the_newest_run_and_a_pairs_history(drift_hub: Hub) -> None:
    with TestClient(drift_hub.web_app()) as client:
        assert client.get("/api/v1/drift").status_code == 401
        h = bearer(drift_hub, "reviewer")
        body = client.get("/api/v1/drift", headers=h).json()
        assert body["config"]["alpha"] == 0.01
        assert body["config"]["correction"] == "bh"
        pairs = {p["device_id"]: p for p in body["pairs"]}
        assert pairs["edge-drift"]["status"] == "drift"
        assert pairs["edge-steady"]["status"] == "ok"
        hist = pairs["edge-drift"]["classes"]["histogram"]
        assert sum(hist["reference"]) == 150
        assert sum(hist["current"]) == 150
        assert pairs["edge-drift"]["embedding"]["p_adjusted"] < 0.01
        assert "history" not in body
        one = client.get(
            "/api/v1/drift",
            params={"device": "edge-drift", "model_version": "2026.03.1"},
            headers=h,
        ).json()
        assert len(one["history"]) == 3
        assert one["history"][0]["computed_at"] < one["history"][-1]["computed_at"]
        page = client.get("/ui/drift", headers=h)
        assert page.status_code == 200
        assert 'id="drift-histogram"' in page.text  # the drifting pair is shown first
        assert "edge-drift / 2026.03.1" in page.text


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)
def test_drift_page_in_chromium(drift_hub: Hub, artifacts_dir: Path) -> None:
    import uvicorn
    from selenium.webdriver.common.by import By

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(drift_hub.web_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn")
    root = f"http://127.0.0.1:{port}"
    try:
        with chromium() as d:
            d.get(root + "/ui/drift")
            wait_for(lambda: "/login" in d.current_url, 10, what="login redirect")
            d.find_element(By.ID, "username").send_keys("reviewer1")
            d.find_element(By.ID, "password").send_keys(PASSWORD)
            d.find_element(By.ID, "login-button").click()
            wait_for(lambda: "/ui/drift" in d.current_url and ready(d), 10, what="drift page")
            rows: list[Any] = d.find_elements(By.CSS_SELECTOR, "#drift-table tr.row")
            status = {r.get_attribute("data-device"): r.get_attribute("data-status") for r in rows}
            assert status == {"edge-drift": "drift", "edge-steady": "ok"}
            bars = d.find_elements(By.CSS_SELECTOR, "#drift-histogram svg rect.cur")
            assert len(bars) >= 2
            points = d.find_elements(By.CSS_SELECTOR, "#drift-history svg circle.pc")
            assert len(points) == 3
            d.save_screenshot(str(artifacts_dir / "hub-drift-1.png"))
            d.find_element(By.LINK_TEXT, "edge-steady").click()
            wait_for(lambda: "device=edge-steady" in d.current_url and ready(d), 10, what="pair")
            assert "edge-steady / 2026.03.1" in d.find_element(By.TAG_NAME, "h1").text
            d.save_screenshot(str(artifacts_dir / "hub-drift-2.png"))
    finally:
        server.should_exit = True
        thread.join(10)
