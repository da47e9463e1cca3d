"""Hub-side alert rules and their delivery to a real webhook receiver and a real MES endpoint."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from hub_data import make_result, real_grids
from hub_support import HttpReceiver, free_port
from hub_testing import add_role_users, feed, hub_config
from sqlalchemy import select

from waferscope.hub.app import Hub
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import AlertRow, Delivery
from waferscope.hub.notify.channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    verify_signature,
)
from waferscope.protocols import messages
from waferscope.protocols.pb import alert_pb2, common_pb2

SECRET = "webhook-shared-secret"


def notify_hub(tmp_path: Path, db_url: str | None, hook_url: str, mes_url: str) -> Hub:
    cfg = hub_config(
        tmp_path,
        db_url,
        notify={
            "webhooks": [
                {
                    "name": "ops-hook",
                    "url": hook_url,
                    "secret": SECRET,
                    "min_severity": "warning",
                    "timeout_s": 5,
                }
            ],
            "mes": {
                "enabled": True,
                "url": mes_url,
                "method": "PUT",
                "headers": {"X-Api-Key": "mes-key"},
                "min_severity": "error",
                "payload": {
                    "event": "WAFER_ALERT",
                    "lot": "{lot_id}",
                    "pattern": "{pattern}",
                    "text": "{title} ({severity})",
                },
            },
            "max_attempts": 4,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
        },
    )
    hub = Hub(cfg)
    add_role_users(hub)
    return hub


def edge_alert(severity: int, **fields: str) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        sequence=1,
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="pattern",
        rule_kind="pattern",
        severity=severity,
        title="Scratch on T-01",
        pattern="Scratch",
        tester_id="T-01",
        lot_id="LOT0042",
        **fields,
    )
    alert.raised_time.GetCurrentTime()
    return alert


def drain(hub: Hub, rounds: int = 40) -> None:
    for _ in range(rounds):
        hub.notifier.run_once()
        with hub.db.session() as s:
            if not s.scalars(select(Delivery).where(Delivery.state == "pending")).first():
                return
        time.sleep(0.06)


def deliveries(hub: Hub) -> dict[str, Delivery]:
    with hub.db.session() as s:
        return {d.channel: d for d in s.scalars(select(Delivery))}


def test_webhook_retries_signed_and_mes_mapping(tmp_path: Path, db_url: str) -> None:
    hook = HttpReceiver(statuses=[503, 500, 200])
    mes = HttpReceiver(statuses=[200])
    hub = notify_hub(tmp_path, db_url, hook.url + "/hook", mes.url + "/mes/events")
    try:
        alert = edge_alert(common_pb2.SEVERITY_ERROR)
        feed(hub, [alert, alert])  # a duplicate delivery of the alert: one notification each
        drain(hub)
        got = deliveries(hub)
        assert (got["ops-hook"].state, got["ops-hook"].attempts) == ("delivered", 3)
        assert got["ops-hook"].last_status_code == 200
        assert (got["mes"].state, got["mes"].attempts) == ("delivered", 1)
        assert len(hook.requests) == 3
        ids = {r.headers[DELIVERY_HEADER.lower()] for r in hook.requests}
        assert len(ids) == 1  # the same delivery id on every retry
        for req in hook.requests:
            assert verify_signature(SECRET, req.body, req.headers[SIGNATURE_HEADER.lower()])
            assert not verify_signature("wrong", req.body, req.headers[SIGNATURE_HEADER.lower()])
        body = messages.decode(hook.requests[-1].body, alert_pb2.Alert)
        assert body.alert_id == alert.alert_id and body.title == "Scratch on T-01"
        (req,) = mes.requests
        assert req.path == "/mes/events" and req.headers["x-api-key"] == "mes-key"
        assert json.loads(req.body) == {
            "event": "WAFER_ALERT",
            "lot": "LOT0042",
            "pattern": "Scratch",
            "text": "Scratch on T-01 (error)",
        }
    finally:
        hub.stop()
        hook.close()
        mes.close()


def test_failures_are_recorded(tmp_path: Path, sqlite_url: str) -> None:
    hook = HttpReceiver(statuses=[400])
    dead_port = free_port()  # nothing listens there
    hub = notify_hub(tmp_path, sqlite_url, hook.url, f"http://127.0.0.1:{dead_port}/mes")
    try:
        feed(hub, [edge_alert(common_pb2.SEVERITY_CRITICAL)])
        info = edge_alert(common_pb2.SEVERITY_INFO)  # below both channels' minimum
        feed(hub, [info])
        drain(hub)
        got = deliveries(hub)
        assert set(got) == {"ops-hook", "mes"}
        assert (got["ops-hook"].state, got["ops-hook"].attempts) == ("failed", 1)  # 4xx: final
        assert got["mes"].state == "failed" and got["mes"].attempts == 4  # retried, then gave up
        assert "ConnectError" in got["mes"].last_error
        metrics = hub.metrics.render().decode()
        assert 'waferscope_hub_notify_attempts_total{channel="mes",outcome="retry"} 3.0' in metrics
    finally:
        hub.stop()
        hook.close()


def test_rules_same_pattern_in_lot_and_rising_rate(
    tmp_path: Path, db_url: str, data_dir: Path
) -> None:
    hook = HttpReceiver()
    hub = notify_hub(tmp_path, db_url, hook.url, hook.url + "/mes")
    try:
        now = utcnow()
        grids = real_grids(data_dir, 140)
        msgs = []
        # baseline: two days of ordinary wafers on three testers, Scratch 2 %
        for i, (g, lab) in enumerate(grids[:100]):
            msgs.append(
                make_result(
                    g,
                    lab,
                    i,
                    pattern="Scratch" if i % 50 == 0 else "none",
                    confidence=0.95,
                    tester=f"T-0{i % 3 + 1}",
                    lot=f"BASE{i // 25}",
                    when=now - timedelta(hours=30) + timedelta(minutes=10 * i),
                )
            )
        # the last hour: lot LOT0099 shows Scratch on two testers; Scratch at 40 %
        for k, (g, lab) in enumerate(grids[100:]):
            scratch = k % 5 < 2
            msgs.append(
                make_result(
                    g,
                    lab,
                    100 + k,
                    pattern="Scratch" if scratch else "none",
                    confidence=0.9,
                    tester="T-01" if k % 2 else "T-02",
                    lot="LOT0099",
                    when=now - timedelta(minutes=50) + timedelta(minutes=k),
                )
            )
        feed(hub, msgs)
        raised = hub.rules.run_once(now + timedelta(seconds=1))
        assert hub.rules.run_once(now + timedelta(seconds=2)) == []  # once per condition
        with hub.db.session() as s:
            rows = {a.rule_id: a for a in s.scalars(select(AlertRow))}
        assert set(raised) == {a.alert_id for a in rows.values()}
        lot = rows["same-pattern-in-lot"]
        assert (lot.source, lot.pattern, lot.lot_id) == ("hub", "Scratch", "LOT0099")
        assert lot.tester_id == "T-01,T-02" and lot.severity == "error"
        assert len(lot.related_result_ids or []) == 16
        rate = rows["pattern-rate"]
        assert rate.pattern == "Scratch" and "40.0%" in rate.title
        drain(hub)
        assert len(hook.requests) == 3  # webhook: both; MES (error and worse): the lot alert
    finally:
        hub.stop()
        hook.close()
