"""Alerts (from edges and hub rules), acknowledgement, and their deliveries to channels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import AlertRow, Delivery, table
from waferscope.hub.store.audit import audit
from waferscope.hub.store.sql import insert_ignore, insert_new
from waferscope.protocols.pb import alert_pb2, common_pb2
from waferscope.protocols.pb.alert_pb2 import Alert

ALERTS = table(AlertRow)
DELIVERIES = table(Delivery)
SEVERITIES = ("info", "warning", "error", "critical")


def severity_rank(name: str) -> int:
    return SEVERITIES.index(name) if name in SEVERITIES else 0


def list_alerts(
    session: Session,
    *,
    acknowledged: bool | None = None,
    severity: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AlertRow]:
    stmt = select(AlertRow)
    if acknowledged is not None:
        stmt = stmt.where(AlertRow.acknowledged == acknowledged)
    if severity:
        stmt = stmt.where(AlertRow.severity == severity)
    stmt = stmt.order_by(AlertRow.raised_time.desc(), AlertRow.alert_id).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def open_alert_count(session: Session) -> int:
    stmt = select(func.count()).select_from(AlertRow).where(AlertRow.acknowledged.is_(False))
    return int(session.scalar(stmt) or 0)


def acknowledge(session: Session, alert_id: str, *, user: str, remote_addr: str = "") -> bool:
    """Mark an alert acknowledged; False when it does not exist or already was."""
    row = session.get(AlertRow, alert_id)
    if row is None or row.acknowledged:
        return False
    row.acknowledged = True
    row.acknowledged_by = user
    row.acknowledged_time = utcnow()
    audit(session, user, "alert.acknowledge", alert_id, remote_addr=remote_addr)
    return True


def to_message(row: AlertRow) -> Alert:
    """The stored alert as the waferscope.v1 Alert message (what webhooks receive)."""
    msg = Alert(
        alert_id=row.alert_id,
        device_id=row.device_id,
        sequence=row.sequence,
        source=alert_pb2.ALERT_SOURCE_HUB if row.source == "hub" else alert_pb2.ALERT_SOURCE_EDGE,
        rule_id=row.rule_id,
        rule_kind=row.rule_kind,
        severity=common_pb2.Severity.Value("SEVERITY_" + row.severity.upper())
        if row.severity.upper() in ("INFO", "WARNING", "ERROR", "CRITICAL")
        else common_pb2.SEVERITY_UNSPECIFIED,
        title=row.title,
        message=row.message,
        pattern=row.pattern,
        tester_id=row.tester_id,
        lot_id=row.lot_id,
        wafer_id=row.wafer_id,
        related_result_ids=list(row.related_result_ids or []),
        dedup_key=row.dedup_key,
        acknowledged=row.acknowledged,
        acknowledged_by=row.acknowledged_by or "",
    )
    msg.raised_time.FromDatetime(row.raised_time)
    if row.acknowledged_time is not None:
        msg.acknowledged_time.FromDatetime(row.acknowledged_time)
    return msg


# --------------------------------------------------------------------------- hub alerts
def has_recent(conn: Connection, dedup_key: str, since: datetime) -> bool:
    """Whether an alert with this dedup key was raised since ``since`` (rules fire once)."""
    stmt = (
        select(ALERTS.c.alert_id)
        .where(ALERTS.c.dedup_key == dedup_key, ALERTS.c.raised_time >= since)
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


def insert_alerts(conn: Connection, rows: Sequence[dict[str, object]]) -> set[str]:
    return insert_new(conn, ALERTS, rows, key="alert_id")


# --------------------------------------------------------------------------- deliveries
def enqueue_deliveries(
    conn: Connection, alerts: Sequence[tuple[str, str]], channels: Sequence[tuple[str, str]]
) -> int:
    """Create pending deliveries: ``alerts`` are (alert_id, severity), ``channels`` (name,
    minimum severity). One delivery per alert and channel, whatever the repeats."""
    now = utcnow()
    rows = [
        {
            "alert_id": alert_id,
            "channel": name,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
        }
        for alert_id, severity in alerts
        for name, minimum in channels
        if severity_rank(severity) >= severity_rank(minimum)
    ]
    insert_ignore(conn, DELIVERIES, rows)
    return len(rows)


def due_deliveries(session: Session, *, now: datetime, limit: int = 50) -> list[Delivery]:
    stmt = (
        select(Delivery)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    ok: bool,
    status_code: int | None,
    error: str,
    retry_in: timedelta | None,
) -> None:
    """Store one attempt: delivered, pending again (retry_in), or failed for good."""
    now = utcnow()
    values: dict[str, object] = {
        "attempts": Delivery.attempts + 1,
        "last_status_code": status_code,
        "last_error": error[:2000],
    }
    if ok:
        values |= {"state": "delivered", "delivered_at": now}
    elif retry_in is None:
        values |= {"state": "failed"}
    else:
        values |= {"next_attempt_at": now + retry_in}
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def deliveries_of(session: Session, alert_id: str) -> list[Delivery]:
    return list(
        session.scalars(
            select(Delivery).where(Delivery.alert_id == alert_id).order_by(Delivery.channel)
        )
    )
