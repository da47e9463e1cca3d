"""Writing what arrives from the edges: results, alerts, device status, dead letters.

Two steps per batch. :func:`result_rows` maps one decoded ``WaferResult`` to table rows (pure:
the ingest handler has already written its map and heatmap to the blob store, content-addressed,
and decided its review). :func:`write_batch` then inserts a whole batch in one transaction with
"insert if the id is new" statements, so a replayed or duplicated message never makes a second
row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, and_, or_, update

from waferscope.hub.db.engine import to_naive_utc, utcnow
from waferscope.hub.db.schema import (
    AlertRow,
    DeadLetter,
    Device,
    Heatmap,
    Result,
    ReviewItem,
    Tester,
    Wafer,
    table,
)
from waferscope.hub.mapcodec import encode_heatmap, encode_map
from waferscope.hub.review_policy import QueueDecision
from waferscope.hub.store.sql import excluded, greatest, insert_ignore, insert_new, upsert
from waferscope.protocols.pb import alert_pb2, common_pb2, device_pb2, result_pb2
from waferscope.protocols.pb.alert_pb2 import Alert
from waferscope.protocols.pb.device_pb2 import DeviceBirth, DeviceStatus
from waferscope.protocols.pb.result_pb2 import WaferResult

WAFERS = table(Wafer)
RESULTS = table(Result)
HEATMAPS = table(Heatmap)
QUEUE = table(ReviewItem)
TESTERS = table(Tester)
DEVICES = table(Device)
ALERTS = table(AlertRow)
DEAD = table(DeadLetter)


def ts(value: Timestamp, fallback: datetime | None = None) -> datetime | None:
    """A protobuf timestamp as naive UTC, or ``fallback`` when it is unset."""
    if value.seconds == 0 and value.nanos == 0:
        return fallback
    return to_naive_utc(value.ToDatetime())


def _enum(enum_type: Any, value: int) -> str:
    try:
        return str(enum_type.Name(value))
    except ValueError:
        return str(value)


def severity_name(value: int) -> str:
    return _enum(common_pb2.Severity, value).removeprefix("SEVERITY_").lower()


@dataclass(slots=True)
class ResultRows:
    """The rows of one result, ready to insert."""

    result_id: str
    device_id: str
    sequence: int
    wafer: dict[str, Any]
    result: dict[str, Any]
    heatmap: dict[str, Any] | None
    queue: dict[str, Any] | None


def _distribution(pred: result_pb2.Prediction) -> list[list[Any]]:
    return [[c.name, round(float(c.probability), 6)] for c in pred.distribution]


@dataclass(frozen=True, slots=True)
class BlobKeys:
    """Where a result's map and heatmap lie in the blob store (None: the message carried none)."""

    map_blob: str | None = None
    heatmap_blob: str | None = None


def map_payload(message: WaferResult) -> bytes | None:
    """The stored form of the result's map, or None when it carries no map."""
    if message.HasField("map") and message.map.rows and message.map.cols:
        return encode_map(message.map)
    return None


def heatmap_payload(message: WaferResult) -> bytes | None:
    """The stored form of the result's heatmap, or None when it carries none."""
    hm = message.heatmap
    if message.HasField("heatmap") and hm.rows and hm.cols and len(hm.data):
        return encode_heatmap(hm)
    return None


def result_rows(
    message: WaferResult,
    *,
    now: datetime,
    blob_keys: BlobKeys = BlobKeys(),
    queue_decision: QueueDecision | None = None,
    origin: str = "edge",
    wafer_ref: str | None = None,
    store_embedding: bool = True,
) -> ResultRows:
    """Rows for one result (a pure mapping): the wafer, the result, the heatmap row where
    ``blob_keys`` names its blob, the queue item where ``queue_decision`` queues it."""
    w = message.wafer
    map_blob = blob_keys.map_blob
    wafer_id = wafer_ref or message.result_id
    classified = ts(message.classified_time, now) or now
    wafer = {
        "id": wafer_id,
        "lot_id": w.lot_id,
        "wafer_id": w.wafer_id,
        "tester_id": w.tester_id,
        "device_id": message.device_id,
        "program": w.program[:128],
        "part_type": w.part_type[:128],
        "source_name": w.source_name[:255],
        "source_format": w.source_format[:32],
        "wafer_index": w.wafer_index,
        "test_start": ts(w.test_start_time),
        "test_end": ts(w.test_end_time),
        "extra": dict(w.extra) or None,
        "die_count": message.die_count,
        "pass_count": message.pass_count,
        "fail_count": message.fail_count,
        "yield_fraction": float(message.yield_fraction),
        "map_rows": message.map.rows,
        "map_cols": message.map.cols,
        "map_blob": map_blob,
        "created_at": now,
    }
    probabilities = None
    if message.pattern.distribution or message.root_cause.distribution:
        probabilities = {
            "pattern": _distribution(message.pattern),
            "root_cause": _distribution(message.root_cause),
        }
    findings = [
        {
            "code": f.code,
            "severity": severity_name(f.severity),
            "message": f.message,
            "count": f.count,
        }
        for f in message.quality_findings
    ]
    regions = [
        [r.x_min, r.y_min, r.x_max, r.y_max, round(float(r.score), 4), r.fail_count]
        for r in message.hot_regions
    ]
    t = message.timings
    timings = (
        {
            k: round(float(getattr(t, k + "_ms")), 3)
            for k in (
                "parse",
                "validate",
                "encode",
                "infer",
                "explain",
                "store",
                "publish",
                "total",
            )
        }
        if message.HasField("timings")
        else None
    )
    embedding = None
    if store_embedding and len(message.embedding):
        embedding = np.asarray(message.embedding, dtype=np.float32).tobytes()
    result = {
        "result_id": message.result_id,
        "wafer_ref": wafer_id,
        "device_id": message.device_id,
        "sequence": message.sequence,
        "correlation_id": message.correlation_id[:128],
        "origin": origin,
        "lot_id": w.lot_id,
        "wafer_id": w.wafer_id,
        "tester_id": w.tester_id,
        "received_time": ts(message.received_time),
        "classified_time": classified,
        "ingested_at": now,
        "pattern": message.pattern.name,
        "pattern_probability": float(message.pattern.probability),
        "confidence": float(message.confidence),
        "root_cause": message.root_cause.name,
        "root_cause_probability": float(message.root_cause.probability),
        "probabilities": probabilities,
        "model_version": message.model_version,
        "encoding_version": message.encoding_version,
        "runtime_provider": message.runtime_provider,
        "review_required": message.review_required,
        "review_reason": _enum(result_pb2.ReviewReason, message.review_reason)
        .removeprefix("REVIEW_REASON_")
        .lower(),
        "review_detail": message.review_detail,
        "quality_score": float(message.quality_score),
        "quality_findings": findings or None,
        "hot_regions": regions or None,
        "timings": timings,
        "embedding": embedding,
    }
    heatmap = None
    hm = message.heatmap
    if blob_keys.heatmap_blob is not None:
        heatmap = {
            "result_id": message.result_id,
            "rows": hm.rows,
            "cols": hm.cols,
            "blob": blob_keys.heatmap_blob,
            "target_class": hm.target_class,
            "method": hm.method,
        }
    decision = queue_decision
    queue = None
    if decision is not None:
        queue = {
            "result_id": message.result_id,
            "priority": decision.priority,
            "reason": decision.reason,
            "state": "open",
            "enqueued_at": now,
        }
    return ResultRows(
        message.result_id, message.device_id, message.sequence, wafer, result, heatmap, queue
    )


def alert_row(message: Alert, *, now: datetime) -> dict[str, Any]:
    source = "hub" if message.source == alert_pb2.ALERT_SOURCE_HUB else "edge"
    return {
        "alert_id": message.alert_id,
        "source": source,
        "device_id": message.device_id,
        "sequence": message.sequence,
        "rule_id": message.rule_id,
        "rule_kind": message.rule_kind,
        "severity": severity_name(message.severity) if message.severity else "warning",
        "title": message.title[:255],
        "message": message.message,
        "raised_time": ts(message.raised_time, now),
        "ingested_at": now,
        "pattern": message.pattern,
        "tester_id": message.tester_id,
        "lot_id": message.lot_id,
        "wafer_id": message.wafer_id,
        "related_result_ids": list(message.related_result_ids) or None,
        "dedup_key": message.dedup_key[:255],
        "acknowledged": False,
    }


def dead_letter_row(
    topic: str, payload: bytes, error: str, device_id: str, *, now: datetime, keep_bytes: int
) -> dict[str, Any]:
    digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
    return {
        "received_at": now,
        "topic": topic[:512],
        "device_id": device_id[:64],
        "error": error[:4000],
        "payload": payload[:keep_bytes],
        "payload_size": len(payload),
        "digest": digest,
    }


@dataclass(slots=True)
class Batch:
    """Everything one ingest transaction writes."""

    results: list[ResultRows] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[DeviceStatus] = field(default_factory=list)
    births: list[DeviceBirth] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    # not written: each message's log fields and span until the commit (ingest/observe.py)
    observed: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.results)
            + len(self.alerts)
            + len(self.statuses)
            + len(self.births)
            + len(self.dead_letters)
        )


@dataclass(slots=True)
class BatchOutcome:
    new_results: set[str] = field(default_factory=set)
    new_alerts: set[str] = field(default_factory=set)
    duplicates: int = 0


def write_batch(conn: Connection, batch: Batch, *, now: datetime | None = None) -> BatchOutcome:
    """Insert one batch in the caller's transaction; duplicates are skipped, not errors."""
    now = now or utcnow()
    out = BatchOutcome()
    # A batch may hold the same message twice (a redelivery right after a reconnect).
    unique: dict[str, ResultRows] = {}
    for rows in batch.results:
        unique.setdefault(rows.result_id, rows)
    results = list(unique.values())
    if results:
        insert_ignore(conn, WAFERS, [r.wafer for r in results])
        out.new_results = insert_new(conn, RESULTS, [r.result for r in results], key="result_id")
        fresh = [r for r in results if r.result_id in out.new_results]
        insert_ignore(conn, HEATMAPS, [r.heatmap for r in fresh if r.heatmap])
        insert_ignore(conn, QUEUE, [r.queue for r in fresh if r.queue])
        testers = {r.wafer["tester_id"]: r.device_id for r in fresh if r.wafer["tester_id"]}
        insert_ignore(
            conn,
            TESTERS,
            [{"tester_id": t, "device_id": d, "first_seen": now} for t, d in testers.items()],
        )
        _touch_devices(conn, results, now)
    out.duplicates = len(batch.results) - len(out.new_results)
    alerts = {a["alert_id"]: a for a in batch.alerts}
    out.new_alerts = insert_new(conn, ALERTS, list(alerts.values()), key="alert_id")
    out.duplicates += len(batch.alerts) - len(out.new_alerts)
    for birth in batch.births:
        apply_birth(conn, birth, now)
    for status in batch.statuses:
        apply_status(conn, status, now)
    insert_ignore(conn, DEAD, batch.dead_letters)
    return out


def _touch_devices(conn: Connection, results: Sequence[ResultRows], now: datetime) -> None:
    best: dict[str, int] = {}
    for r in results:
        best[r.device_id] = max(best.get(r.device_id, 0), r.sequence)
    x = excluded(conn, DEVICES)
    for device_id, seq in sorted(best.items()):
        upsert(
            conn,
            DEVICES,
            {
                "device_id": device_id,
                "first_seen": now,
                "last_seen": now,
                "result_sequence_max": seq,
                "state": "unknown",
            },
            keys=["device_id"],
            update={
                "last_seen": x.last_seen,
                "result_sequence_max": greatest(
                    conn, DEVICES.c.result_sequence_max, x.result_sequence_max
                ),
            },
        )


_STATE = {
    device_pb2.DEVICE_STATE_ONLINE: "online",
    device_pb2.DEVICE_STATE_OFFLINE: "offline",
    device_pb2.DEVICE_STATE_DEGRADED: "degraded",
}


def apply_birth(conn: Connection, birth: DeviceBirth, now: datetime) -> None:
    values = {
        "site": birth.site or None,
        "agent_version": birth.agent_version,
        "model_version": birth.model_version,
        "encoding_version": birth.encoding_version,
        "capabilities": list(birth.capabilities),
        "platform": birth.platform,
        "accelerator": birth.accelerator,
        "config_digest": birth.config_digest,
        "last_seen": now,
    }
    upsert(
        conn,
        DEVICES,
        {
            "device_id": birth.device_id,
            "first_seen": now,
            "state": "unknown",
            "result_sequence_max": 0,
            **values,
        },
        keys=["device_id"],
        update=values,
    )


def apply_status(conn: Connection, status: DeviceStatus, now: datetime) -> None:
    """Record a status; an OFFLINE from an older connection than the current one is ignored."""
    state = _STATE.get(status.state, "unknown")
    values: dict[str, Any] = {"last_seen": now}
    if state == "offline":
        values |= {"state": state, "state_since": now}
        if status.cause != device_pb2.STATUS_CAUSE_LAST_WILL:
            values["outbox_depth"] = status.outbox_depth
        # a device first heard of through its will still gets a row
        insert_ignore(
            conn,
            DEVICES,
            [
                {
                    "device_id": status.device_id,
                    "first_seen": now,
                    "result_sequence_max": 0,
                    "state": "unknown",
                    "connection_id": status.connection_id or None,
                }
            ],
        )
        condition = DEVICES.c.device_id == status.device_id
        if status.connection_id:
            condition = and_(
                condition,
                or_(
                    DEVICES.c.connection_id.is_(None),
                    DEVICES.c.connection_id == status.connection_id,
                ),
            )
        conn.execute(update(DEVICES).where(condition).values(**values))
        return
    values |= {
        "state": state,
        "connection_id": status.connection_id or None,
        "state_since": ts(status.since, now),
        "agent_version": status.agent_version,
        "model_version": status.model_version,
        "encoding_version": status.encoding_version,
        "outbox_depth": status.outbox_depth,
        "degraded_reasons": list(status.degraded_reasons) or None,
    }
    upsert(
        conn,
        DEVICES,
        {"device_id": status.device_id, "first_seen": now, "result_sequence_max": 0, **values},
        keys=["device_id"],
        update=values,
    )


def new_ids(rows: Iterable[ResultRows], outcome: BatchOutcome) -> list[str]:
    return [r.result_id for r in rows if r.result_id in outcome.new_results]
