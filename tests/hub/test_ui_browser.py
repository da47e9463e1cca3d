"""The reviewer UI in a real headless Chromium (Debian's chromium + chromedriver, selenium).

Log in, open the queue, open the most urgent wafer, relabel it with the keyboard, and see it leave
the queue. Screenshots go to test-artifacts/hub-*.png.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, images_loaded, ready
from hub_data import make_result, real_grids
from hub_engine import build_bundle
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, feed, hub_config
from sqlalchemy import select

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import Label, ReviewItem
from waferscope.protocols import messages
from waferscope.protocols.pb import alert_pb2, common_pb2

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)


@pytest.fixture
def served(tmp_path: Path, data_dir: Path) -> Iterator[tuple[str, Hub, list[Any]]]:
    """A hub with real wafers, served by uvicorn on a free port."""
    import uvicorn

    engine = build_bundle(tmp_path / "engine")
    hub = Hub(hub_config(tmp_path, engine={"bundle": str(engine), "shap_samples": 96}))
    add_role_users(hub)
    grids = real_grids(data_dir, 30)
    msgs = [
        make_result(
            g,
            lab,
            i,
            confidence=0.2 + 0.02 * i if i < 12 else 0.97,
            tester=f"T-0{i % 2 + 1}",
            lot=f"LOT{i // 6:04d}",
        )
        for i, (g, lab) in enumerate(grids)
    ]
    alert = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="pattern-repeat",
        severity=common_pb2.SEVERITY_WARNING,
        tester_id="T-01",
        title="Edge-Ring on 3 of the last 5 wafers of T-01",
    )
    alert.raised_time.GetCurrentTime()
    feed(hub, [*msgs, alert])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.web_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn")
    yield f"http://127.0.0.1:{port}", hub, msgs
    server.should_exit = True
    thread.join(10)
    hub.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def test_review_a_wafer_in_chromium(served, browser, artifacts_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root, hub, msgs = served
    d = browser
    d.get(root + "/ui/queue")
    wait_for(lambda: "/login" in d.current_url, 10, what="login redirect")
    d.find_element(By.ID, "username").send_keys("reviewer1")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.save_screenshot(str(artifacts_dir / "hub-1-login.png"))
    d.find_element(By.ID, "login-button").click()
    wait_for(lambda: d.current_url.endswith("/ui/queue") and ready(d), 10, what="the queue")
    assert "reviewer1 · reviewer" in d.find_element(By.ID, "whoami").text
    rows = d.find_elements(By.CSS_SELECTOR, "#queue-table tr.row")
    queued = [r.get_attribute("data-result-id") for r in rows]
    assert queued[0] == msgs[0].result_id  # the least confident first
    d.save_screenshot(str(artifacts_dir / "hub-2-queue.png"))

    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys("j")  # select the first row, open it with Enter
    body.send_keys(Keys.ENTER)
    wait_for(
        lambda: f"/ui/wafers/{queued[0]}" in d.current_url and ready(d), 10, what="the wafer page"
    )
    wait_for(lambda: images_loaded(d), 20, what="map and Grad-CAM overlay")
    wait_for(lambda: d.find_elements(By.ID, "similar-table"), 20, what="similar wafers")
    assert len(d.find_elements(By.CSS_SELECTOR, "#probabilities tr")) == 9
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys("x")  # SHAP on request
    wait_for(lambda: d.find_elements(By.ID, "shap-result"), 60, what="SHAP")
    wait_for(lambda: images_loaded(d), 20, what="SHAP picture")
    d.save_screenshot(str(artifacts_dir / "hub-3-wafer.png"))

    predicted = msgs[0].pattern.name
    radios = d.find_elements(By.CSS_SELECTOR, "input[name=pattern]")
    key = next(
        r.get_attribute("data-key")
        for r in radios
        if r.get_attribute("value") != predicted and r.get_attribute("data-key")
    )
    new_pattern = next(
        r.get_attribute("value") for r in radios if r.get_attribute("data-key") == key
    )
    body.send_keys(key)
    d.find_element(By.ID, "comment").send_keys("relabelled in the browser test")
    d.find_element(By.ID, "comment").send_keys(Keys.ESCAPE)
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    wait_for(
        lambda: f"/ui/wafers/{queued[1]}" in d.current_url, 10, what="the next wafer of the queue"
    )
    d.save_screenshot(str(artifacts_dir / "hub-4-next-wafer.png"))

    d.get(root + "/ui/queue")
    left = [
        r.get_attribute("data-result-id")
        for r in d.find_elements(By.CSS_SELECTOR, "#queue-table tr.row")
    ]
    assert queued[0] not in left and queued[1] in left
    d.save_screenshot(str(artifacts_dir / "hub-5-queue-after.png"))
    with hub.db.session() as s:
        label = s.scalar(select(Label).where(Label.result_id == queued[0]))
        item = s.get(ReviewItem, queued[0])
    assert label is not None and label.pattern == new_pattern and label.labelled_by == "reviewer1"
    assert item is not None and item.state == "done"

    d.get(root + "/ui/trends?tester=T-01&days=7")
    assert d.find_elements(By.CSS_SELECTOR, "#charts svg")
    d.save_screenshot(str(artifacts_dir / "hub-6-trends.png"))
    d.get(root + "/ui/alerts")
    d.find_element(By.CSS_SELECTOR, "button.ack").click()
    wait_for(lambda: "No alerts" in d.page_source, 10, what="the open list to empty")
    d.get(root + "/ui/alerts?show=all")
    assert "ack by reviewer1" in d.find_element(By.ID, "alerts-table").text
    d.get(root + "/ui/results?tester=T-02")
    assert all(
        r.text.split()[2] == "T-02"
        for r in d.find_elements(By.CSS_SELECTOR, "#results-table tr.row")
    )
    d.save_screenshot(str(artifacts_dir / "hub-7-results.png"))


def _log_in(d: Any, root: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(root + "/login")
    d.find_element(By.ID, "username").send_keys("reviewer1")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-button").click()
    wait_for(lambda: d.current_url.endswith("/ui/queue") and ready(d), 10, what="the queue")


def test_shortcuts_of_the_help_page_and_a_refused_review_in_chromium(  # type: ignore[no-untyped-def]
    served, browser, artifacts_dir: Path
) -> None:
    """Every page-to-page shortcut the help lists works; the list keys move the selection; a
    wafer saved without a pattern stays open with the reason and the reviewer's entries."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root, hub, msgs = served
    d = browser
    _log_in(d, root)
    d.get(root + "/ui/help")
    listed = {
        r.get_attribute("data-keys"): r.get_attribute("data-action")
        for r in d.find_elements(By.CSS_SELECTOR, "#shortcuts tr[data-action]")
    }
    d.save_screenshot(str(artifacts_dir / "hub-8-help.png"))
    jumps = {keys: action[3:] for keys, action in listed.items() if action.startswith("go:")}
    assert {"g q", "g r", "g a", "g t", "g d", "?"} <= set(jumps)
    for keys, target in jumps.items():
        d.get(root + ("/ui/alerts" if target != "/ui/alerts" else "/ui/devices"))
        wait_for(lambda: ready(d), 10, what="a page")
        body = d.find_element(By.TAG_NAME, "body")
        for key in keys.split(" "):
            body.send_keys(key)
        wait_for(lambda t=target: d.current_url.endswith(t), 10, what=f"{keys!r} to open {target}")

    assert listed["j | ArrowDown"] == "row-next" and listed["k | ArrowUp"] == "row-previous"
    d.get(root + "/ui/queue")
    wait_for(lambda: ready(d), 10, what="the queue")

    def selected() -> list[int]:
        rows = d.find_elements(By.CSS_SELECTOR, "#queue-table tr.row")
        return [i for i, r in enumerate(rows) if "selected" in (r.get_attribute("class") or "")]

    body = d.find_element(By.TAG_NAME, "body")
    for key, expected in ((Keys.ARROW_DOWN, [0]), (Keys.ARROW_DOWN, [1]), (Keys.ARROW_UP, [0])):
        body.send_keys(key)
        assert selected() == expected

    # an unclassified wafer: saving without a pattern (Ctrl+Enter from the comment) is refused
    unclassified = make_result(messages.unpack_states(msgs[0].map), "none", 40, confidence=0.0)
    unclassified.ClearField("pattern")
    unclassified.ClearField("root_cause")
    feed(hub, [unclassified])
    rid = unclassified.result_id
    d.get(root + f"/ui/wafers/{rid}")
    wait_for(lambda: ready(d), 10, what="the unclassified wafer")
    assert not d.find_elements(By.CSS_SELECTOR, "input[name=pattern]:checked")
    comment = d.find_element(By.ID, "comment")
    comment.send_keys("no pattern yet")
    ActionChains(d).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait_for(lambda: d.find_elements(By.ID, "review-error"), 10, what="the refusal")
    assert "Choose a pattern" in d.find_element(By.ID, "review-error").text
    assert d.find_element(By.ID, "comment").get_attribute("value") == "no pattern yet"
    d.save_screenshot(str(artifacts_dir / "hub-9-refused-review.png"))
    d.find_element(By.TAG_NAME, "body").send_keys("8")
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    wait_for(lambda: "/review" not in d.current_url and ready(d), 10, what="the saved review")
    with hub.db.session() as s:
        label = s.scalar(select(Label).where(Label.result_id == rid))
    assert label is not None and label.labelled_by == "reviewer1"
