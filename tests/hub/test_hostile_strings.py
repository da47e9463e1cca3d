"""Hostile lot ids, wafer ids, programs and alert texts render as text in the hub pages (Chromium).

They enter through the ingest's decode-and-commit path (what the MQTT subscriber runs for each
message) and through the upload API (an E142 file written from a real wafer); the results list,
review queue, wafer pages and alerts are then opened in a real headless Chromium, which must
show them as text: no dialog, no script run, no injected element.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from hostile import (
    IMG_ONERROR,
    JS_URL,
    LONG,
    PAYLOADS,
    RTL_OVERRIDE,
    SCRIPT_TAG,
    SVG_ONLOAD,
    assert_rendered_as_text,
)
from hub_data import make_result, real_grids
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, bearer, feed, hub_config

from waferscope.hub.app import Hub
from waferscope.protocols import messages
from waferscope.protocols.pb import alert_pb2, common_pb2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING),
]


UPLOADED_LOT = SCRIPT_TAG + "-uploaded"


def _upload(root: str, hub: Hub, data_dir: Path) -> list[Any]:
    """A tester file whose lot id and program are HTML/JS, through POST /api/v1/uploads."""
    import httpx
    from sample_wafers import dataset_wafers

    from waferscope.protocols.formats import get_writer
    from waferscope.protocols.wafermap import WaferInfo

    wafer = next(dataset_wafers(data_dir / "wm811k" / "val.npz", 1))
    info = WaferInfo(lot_id=UPLOADED_LOT, wafer_id=JS_URL, program=IMG_ONERROR, tester_id="T-02")
    out = io.BytesIO()
    get_writer("e142").write([wafer.with_(info=info)], out)
    res = httpx.post(
        root + "/api/v1/uploads",
        headers=bearer(hub, "reviewer"),
        files={"data": (SVG_ONLOAD + ".xml", out.getvalue(), "application/xml")},
        timeout=60,
    )
    assert res.status_code == 201, res.text
    ids = res.json()["result_ids"]
    return [SimpleNamespace(result_id=i, wafer=SimpleNamespace(lot_id=UPLOADED_LOT)) for i in ids]


@pytest.fixture
def served(tmp_path: Path, data_dir: Path) -> Iterator[tuple[str, list[Any]]]:
    import uvicorn

    hub = Hub(hub_config(tmp_path))
    add_role_users(hub)
    msgs = []
    for i, (grid, label) in enumerate(real_grids(data_dir, len(PAYLOADS))):
        hostile = PAYLOADS[i]
        msg = make_result(grid, label, i, lot=hostile, confidence=0.2, tester="T-01")
        msg.wafer.wafer_id = PAYLOADS[(i + 1) % len(PAYLOADS)]
        msg.wafer.program = PAYLOADS[(i + 2) % len(PAYLOADS)]
        msg.wafer.source_name = PAYLOADS[(i + 3) % len(PAYLOADS)]
        msgs.append(msg)
    alert = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="pattern-repeat",
        severity=common_pb2.SEVERITY_WARNING,
        tester_id="T-01",
        title=SCRIPT_TAG + IMG_ONERROR,
        message=SVG_ONLOAD + JS_URL + RTL_OVERRIDE,
        lot_id=IMG_ONERROR,
        wafer_id=JS_URL,
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
    root = f"http://127.0.0.1:{port}"
    uploaded = _upload(root, hub, data_dir)
    yield root, [*msgs, *uploaded]
    server.should_exit = True
    thread.join(10)
    hub.stop()


def test_hostile_strings_render_as_text_in_the_hub(served) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    root, msgs = served
    with chromium() as d:
        d.get(root + "/login")
        d.find_element(By.ID, "username").send_keys("reviewer1")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-button").click()
        wait_for(lambda: d.current_url.endswith("/ui/queue") and ready(d), 10, what="the queue")
        assert_rendered_as_text(d, "queue", (SCRIPT_TAG, IMG_ONERROR, SVG_ONLOAD, UPLOADED_LOT))
        d.get(root + "/ui/results")
        wait_for(lambda: ready(d), 10, what="results")
        assert_rendered_as_text(d, "results", (SCRIPT_TAG, IMG_ONERROR, JS_URL))
        for msg in msgs:
            d.get(f"{root}/ui/wafers/{msg.result_id}")
            wait_for(lambda: ready(d), 10, what="wafer page")
            assert_rendered_as_text(d, f"wafer {msg.wafer.lot_id[:20]!r}", (msg.wafer.lot_id,))
        d.get(root + "/ui/alerts")
        wait_for(lambda: ready(d), 10, what="alerts")
        assert_rendered_as_text(d, "alerts", (SCRIPT_TAG + IMG_ONERROR,))
        d.get(f"{root}/ui/results?lot={LONG}")
        wait_for(lambda: ready(d), 10, what="results filtered by a long lot id")
        assert_rendered_as_text(d, "results filtered", (LONG,))
