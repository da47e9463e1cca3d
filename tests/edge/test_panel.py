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
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium
from edge_test_support import Broker, Subscriber, agent_toml, drop, wafer_bytes, wait_for
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config

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
    # every stored result's way from its commit to the broker's PUBACK, and only results'
    wait_for(
        lambda: (
            "waferscope_edge_store_to_ack_seconds_count 11.0" in get(f"{root}/metrics")[1].decode()
        ),
        10,
        what="11 store-to-ack observations",
    )
    status, body, ctype = get(f"{root}/metrics")
    text = body.decode()
    total = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("waferscope_edge_store_to_ack_seconds_sum")
    )
    assert 0 < total < 11 * 60, total
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


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)
def test_panel_in_headless_chromium(panel_agent: Wiring, artifacts_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    with chromium(1600, 1000) as driver:
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
        assert "Not labelled yet" in driver.find_element(By.ID, "label").text
        driver.find_element(By.ID, "confirm").click()  # the operator confirms the prediction
        # read through the DOM in one step: the page reloads after the post (no stale element)
        label_text = 'const e = document.getElementById("label"); return e ? e.textContent : ""'
        wait_for(lambda: "(confirm)" in driver.execute_script(label_text), 10, what="label")
        assert "at the panel" in driver.execute_script(label_text)

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
    assert (artifacts_dir / "edge-panel-overview.png").stat().st_size > 10_000
    time.sleep(0)


def post_json(url: str, body: object = None, token: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        url, data=json.dumps(body or {}).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def reload_agent(folder: Path, bundle: Path, broker: Broker, panel: str) -> Wiring:
    """An agent with its panel, the bundle at ``bundle``; ``panel``: more [panel] lines."""
    folder.mkdir(parents=True, exist_ok=True)
    w = build_agent(
        load_config(agent_toml(folder, bundle, broker.port, panel, panel=True), environ={}).config
    )
    w.agent.start()
    return w


def test_model_reload_loads_only_bundles_under_allowed_folders(
    tmp_path: Path, bundle_dir: Path, broker: Broker
) -> None:
    """The configured bundle's folder and panel.reload_dirs; nothing else, however it is named."""
    for name in ("bundles/current", "bundles/next", "extra/other", "elsewhere/bundle"):
        shutil.copytree(bundle_dir, tmp_path / name)
    (tmp_path / "bundles" / "link").symlink_to(tmp_path / "elsewhere" / "bundle")
    w = reload_agent(tmp_path, tmp_path / "bundles" / "current", broker, 'reload_dirs = ["extra"]')
    try:
        url = base(w) + "/api/model/reload"
        status, body = post_json(url)  # no path: the running bundle again
        assert status == 200 and body["swapped"], body
        status, body = post_json(url, {"path": str(tmp_path / "bundles" / "next")})
        assert status == 200 and body["swapped"], body
        assert w.slot.current.bundle.folder == tmp_path / "bundles" / "next"
        for outside in (
            tmp_path / "elsewhere" / "bundle",
            tmp_path / "bundles" / ".." / "elsewhere" / "bundle",
            tmp_path / "bundles" / "link",
        ):
            status, body = post_json(url, {"path": str(outside)})
            assert status == 403 and not body["swapped"], (outside, status, body)
            assert "not under an allowed folder" in body["error"], body
            assert str(tmp_path / "bundles") in body["error"] and "reload_dirs" in body["error"]
            assert w.slot.current.bundle.folder == tmp_path / "bundles" / "next"
        status, body = post_json(url, {"path": "bundles/next"})
        assert status == 400 and "absolute" in body["error"]
        status, body = post_json(url, {"path": str(tmp_path / "extra" / "other")})
        assert status == 200 and w.slot.current.bundle.folder == tmp_path / "extra" / "other"
        status, body = post_json(url, {"path": str(tmp_path / "extra" / "missing")})
        assert status == 409 and body["model"] == "tiny-test-1"  # allowed, but no bundle there
    finally:
        w.agent.stop()


def test_model_reload_from_the_network_needs_a_token(
    tmp_path: Path, bundle_dir: Path, broker: Broker
) -> None:
    """A panel on 0.0.0.0: no token configured, no reload at all; with one, only with it."""
    bundle = tmp_path / "bundles" / "current"
    shutil.copytree(bundle_dir, bundle)
    w = reload_agent(tmp_path / "open", bundle, broker, 'host = "0.0.0.0"')
    try:
        url = base(w) + "/api/model/reload"
        status, body = post_json(url)
        assert status == 403 and not body["swapped"], (status, body)
        assert "disabled" in body["error"] and "panel.api_token" in body["error"]
        assert get(base(w) + "/api/status")[0] == 200  # the rest of the panel still answers
    finally:
        w.agent.stop()

    token = "t0ken-" + "k" * 26
    (tmp_path / "guarded").mkdir()
    (tmp_path / "guarded" / "panel.token").write_text(token + "\n", encoding="utf-8")
    w = reload_agent(
        tmp_path / "guarded", bundle, broker, 'host = "0.0.0.0"\napi_token_file = "panel.token"'
    )
    try:
        url = base(w) + "/api/model/reload"
        for sent in (None, "wrong-" + "k" * 26):
            status, body = post_json(url, token=sent)
            assert status == 401 and "Bearer" in body["error"], (status, body)
        status, body = post_json(url, {"path": str(bundle)}, token=token)
        assert status == 200 and body["swapped"], body
        status, body = post_json(url, {"path": str(tmp_path / "guarded")}, token=token)
        assert status == 403 and "not under an allowed folder" in body["error"]
    finally:
        w.agent.stop()


def test_which_hosts_count_as_this_machine_and_an_empty_token_file(tmp_path: Path) -> None:
    from waferscope.edge.config import EdgeConfig
    from waferscope.edge.panel.access import ReloadGuard, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.7.20", "prober-07"))
    (tmp_path / "empty.token").write_text("\n", encoding="utf-8")
    config = EdgeConfig.model_validate(
        {"device_id": "a", "panel": {"api_token_file": "empty.token"}}
    ).resolve(tmp_path)
    guard = ReloadGuard.from_config(config)
    assert guard.disabled and "empty.token is empty" in guard.disabled  # even on loopback
    with pytest.raises(OSError, match=r"panel\.api_token_file"):
        ReloadGuard.from_config(
            EdgeConfig.model_validate(
                {"device_id": "a", "panel": {"api_token_file": "missing.token"}}
            ).resolve(tmp_path)
        )


def test_labels_from_the_hub_and_the_panel_go_to_the_store(
    panel_agent: Wiring, broker: Broker
) -> None:
    from waferscope.edge.labels import label_counts, label_of, labelled_wafers
    from waferscope.protocols import messages, topics
    from waferscope.protocols.pb import label_pb2

    w, root = panel_agent, base(panel_agent)
    first, second, third = (r["result_id"] for r in w.store.recent_results(limit=3))
    label = label_pb2.WaferLabel(
        schema_version=1,
        label_id=messages.new_message_id(),
        device_id=w.config.device_id,
        result_id=first,
        pattern="Donut",
        action="correct",
        labelled_by="reviewer-1",
        source=label_pb2.LABEL_SOURCE_HUB_REVIEW,
    )
    hub = Subscriber(broker.port, topic="none/#", client_id="test-hub")
    try:
        wait_for(hub.client.is_connected, 10, what="hub client")
        topic = topics.label_topic(w.config.device_id, site=w.config.site)
        hub.client.publish(topic, messages.encode(label), qos=topics.qos("label")).wait_for_publish(
            10
        )
        wrong = label_pb2.WaferLabel()
        wrong.CopyFrom(label)
        wrong.pattern = " "  # no pattern: refused with one logged error, nothing stored
        wrong.result_id = third
        wrong.label_id = messages.new_message_id()
        hub.client.publish(topic, messages.encode(wrong), qos=1).wait_for_publish(10)
    finally:
        hub.close()
    wait_for(lambda: label_of(w.store, first) is not None, 10, what="the hub's label stored")
    stored = label_of(w.store, first)
    assert stored is not None
    assert (stored["pattern"], stored["source"], stored["labelled_by"]) == (
        "Donut",
        "hub-review",
        "reviewer-1",
    )
    assert label_of(w.store, third) is None

    predicted = w.store.result(second)
    assert predicted is not None
    status, body = post_json(
        f"{root}/api/wafers/{second}/label",
        {"pattern": predicted[1].pattern.name, "operator": "op"},
    )
    assert status == 200 and body["action"] == "confirm" and body["source"] == "edge-panel"
    assert post_json(f"{root}/api/wafers/{second}/label", {"pattern": "Nope"})[0] == 400
    assert post_json(f"{root}/api/wafers/nope/label", {"pattern": "Donut"})[0] == 404

    counts = label_counts(w.store)
    assert counts == {"hub-review": 1, "edge-panel": 1, "with_map": 2}
    wafers = {x.result_id: x for x in labelled_wafers(w.store)}
    assert set(wafers) == {first, second} and wafers[first].pattern == "Donut"
    held = w.store.result(first)
    assert held is not None
    assert wafers[first].grid.shape == (held[1].map.rows, held[1].map.cols)
    assert int((wafers[first].grid == 2).sum()) == held[1].fail_count
