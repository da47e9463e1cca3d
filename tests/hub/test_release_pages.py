"""The release pages in a real headless Chromium: register a release by upload, start a rollout
from the form, see its waves and devices, pause, resume and abort it with the buttons."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, hub_config
from release_keys import make_signer

from waferscope.hub.app import Hub
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Device
from waferscope.hub.store.audit import recent_audit

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)


@pytest.fixture
def served(tmp_path: Path, bundle_dir: Path) -> Iterator[tuple[str, Hub, Path]]:
    import uvicorn

    keys = make_signer(tmp_path / "keys")
    release = keys.sign(bundle_dir, tmp_path / "r7.wsrelease", 7)
    hub = Hub(hub_config(tmp_path, releases={"trusted_root_keys": [str(keys.root_pub)]}))
    add_role_users(hub)
    with hub.db.session(write=True) as s:
        for i in range(3):
            s.add(
                Device(
                    device_id=f"edge-0{i + 1}",
                    site="fab3",
                    state="online",
                    model_version="tiny-test-1",
                    state_since=utcnow(),
                )
            )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.web_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn")
    yield f"http://127.0.0.1:{port}", hub, release
    server.should_exit = True
    thread.join(10)
    hub.stop()


def test_register_and_steer_a_rollout_in_chromium(served, artifacts_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    root, hub, release = served
    with chromium() as d:
        d.get(root + "/ui/releases")
        wait_for(lambda: "/login" in d.current_url, 10, what="login redirect")
        d.find_element(By.ID, "username").send_keys("engineer1")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-button").click()
        wait_for(lambda: d.current_url.endswith("/ui/releases") and ready(d), 10, what="page")
        d.find_element(By.ID, "release-file").send_keys(str(release))
        d.find_element(By.CSS_SELECTOR, "#release-form button").click()
        wait_for(lambda: d.find_elements(By.ID, "release-done"), 20, what="registered")
        rows = d.find_elements(By.CSS_SELECTOR, "#releases-table tr[data-release]")
        assert len(rows) == 1 and "tiny-test-1" in rows[0].text and "stable" in rows[0].text
        # the same file again is no new release; a junk file is refused with its reason
        junk = release.with_name("junk.wsrelease")
        junk.write_bytes(b"junk" * 100)
        d.find_element(By.ID, "release-file").send_keys(str(junk))
        d.find_element(By.CSS_SELECTOR, "#release-form button").click()
        wait_for(lambda: d.find_elements(By.ID, "release-error"), 20, what="refusal")
        assert "not a release file" in d.find_element(By.ID, "release-error").text
        d.save_screenshot(str(artifacts_dir / "hub-releases.png"))

        waves = d.find_element(By.ID, "rollout-waves")
        waves.clear()
        waves.send_keys("edge-02, 100%")
        d.find_element(By.ID, "rollout-start").click()
        wait_for(lambda: "/ui/rollouts/" in d.current_url and ready(d), 10, what="rollout page")
        devices = {
            r.get_attribute("data-device"): r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#rollout-devices tr[data-device]")
        }
        assert sorted(devices) == ["edge-01", "edge-02", "edge-03"]
        assert devices["edge-02"].split()[1] == "1" and devices["edge-01"].split()[1] == "2"
        assert d.find_element(By.ID, "rollout-state").text == "pending"
        for action, state in (("pause", "paused"), ("resume", "in_progress"), ("abort", "aborted")):
            d.find_element(By.ID, f"action-{action}").click()
            wait_for(
                lambda s=state: d.find_element(By.ID, "rollout-state").text == s,
                10,
                what=state,
            )
        d.find_element(By.ID, "action-pause").click()  # not allowed any more: an error page
        wait_for(
            lambda: "cannot pause a rollout that is aborted" in d.page_source, 10, what="refusal"
        )
        d.save_screenshot(str(artifacts_dir / "hub-rollout.png"))
    with hub.db.session() as s:
        actions = [e.action for e in recent_audit(s) if e.action.startswith("rollout.")]
    assert actions == ["rollout.abort", "rollout.resume", "rollout.pause", "rollout.create"]
