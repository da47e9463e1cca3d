"""The training-jobs page in a real headless Chromium: a running job's progress and log, a
failed job's reason, reached from the navigation bar."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, hub_config

from waferscope.hub.app import Hub
from waferscope.hub.store import training

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)


@pytest.fixture
def served_jobs(tmp_path: Path) -> Iterator[str]:
    import uvicorn

    hub = Hub(hub_config(tmp_path))
    add_role_users(hub)
    with hub.db.session(write=True) as s:
        failed = training.request_training(s, "manual", "first try")
        training.claim(s, "worker-a")
        training.finish(s, failed.id, "worker-a", ok=False, error="gate not met", log_limit=10_000)
    with hub.db.session(write=True) as s:
        running = training.request_training(s, "drift", "alert a-1 (drift)")
        training.claim(s, "worker-b")
        step = training.JobProgress(0.4, "fine-tune", ["epoch 1: score 0.81", "epoch 2: running"])
        training.report_progress(s, running.id, "worker-b", step, log_limit=10_000)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.web_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    hub.stop()


def test_jobs_page_shows_progress_log_and_failure(served_jobs: str, artifacts_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    d: Any
    with chromium() as d:
        d.get(served_jobs + "/login")
        d.find_element(By.ID, "username").send_keys("operator1")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-button").click()
        wait_for(lambda: d.current_url.endswith("/ui/queue") and ready(d), 10, what="the queue")
        d.find_element(By.LINK_TEXT, "Training").click()
        wait_for(lambda: d.current_url.endswith("/ui/training") and ready(d), 10, what="jobs")
        rows = d.find_elements(By.CSS_SELECTOR, "#training-table tr.job")
        assert [r.get_attribute("data-job") for r in rows] == ["2", "1"]  # newest first
        running, failed = rows
        assert "running" in running.text and "40%" in running.text and "worker-b" in running.text
        log = d.find_element(By.CSS_SELECTOR, "#training-table details[open] pre.job-log")
        assert log.is_displayed() and "epoch 2: running" in log.text
        assert "failed" in failed.text and "gate not met" in failed.text
        d.save_screenshot(str(artifacts_dir / "hub-training-jobs.png"))
