"""Shared helpers of the API and UI routes: the hub dependency, row-to-JSON views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import AlertRow, Delivery, Device, Result
from waferscope.hub.store.queries import Cursor, ResultFilter, WaferDetail, wafer_detail

AnyRequest = Request[Any, Any, Any]

MAX_OFFSET: Final = 10**9
# A row offset / page number the database can hold (SQLite and PostgreSQL take 64-bit OFFSETs);
# a larger one is a 400, not an overflow in the driver.
Offset = Annotated[int, Parameter(le=MAX_OFFSET)]


def provide_hub(state: State) -> Hub:
    """The hub this app serves: the ``hub`` dependency every route handler takes."""
    hub: Hub = state.hub
    return hub


HUB_DEPENDENCY: Final = {"hub": Provide(provide_hub, sync_to_thread=False)}
# what a route handler declares to be given the hub: ``hub: HubDependency``
HubDependency: TypeAlias = NamedDependency[Hub]


def client_addr(request: AnyRequest) -> str:
    return request.client.host if request.client else ""


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.removesuffix("Z"))
    except ValueError:
        return None


def result_filter(params: dict[str, str | None]) -> ResultFilter:
    return ResultFilter(
        tester=params.get("tester") or None,
        lot=params.get("lot") or None,
        pattern=params.get("pattern") or None,
        model_version=params.get("model_version") or None,
        device=params.get("device") or None,
        date_from=parse_date(params.get("date_from")),
        date_to=parse_date(params.get("date_to")),
    )


def cursor(token: str | None) -> Cursor | None:
    return Cursor.parse(token)


def result_summary(r: Result, label: str | None = None) -> dict[str, Any]:
    return {
        "result_id": r.result_id,
        "device_id": r.device_id,
        "sequence": r.sequence,
        "origin": r.origin,
        "lot_id": r.lot_id,
        "wafer_id": r.wafer_id,
        "tester_id": r.tester_id,
        "classified_time": iso(r.classified_time),
        "pattern": r.pattern,
        "confidence": round(r.confidence, 4),
        "root_cause": r.root_cause,
        "model_version": r.model_version,
        "review_required": r.review_required,
        "quality_score": round(r.quality_score, 3),
        "label": label,
    }


def detail_json(d: WaferDetail) -> dict[str, Any]:
    r, w = d.result, d.wafer
    return {
        **result_summary(r, d.label.pattern if d.label else None),
        "correlation_id": r.correlation_id,
        "received_time": iso(r.received_time),
        "ingested_at": iso(r.ingested_at),
        "pattern_probability": r.pattern_probability,
        "root_cause_probability": r.root_cause_probability,
        "probabilities": r.probabilities,
        "encoding_version": r.encoding_version,
        "runtime_provider": r.runtime_provider,
        "review_reason": r.review_reason,
        "review_detail": r.review_detail,
        "quality_findings": r.quality_findings or [],
        "hot_regions": [
            dict(zip(("x_min", "y_min", "x_max", "y_max", "score", "fail_count"), h, strict=True))
            for h in (r.hot_regions or [])
        ],
        "timings": r.timings,
        "has_embedding": r.embedding is not None,
        "wafer": {
            "id": w.id,
            "source_name": w.source_name,
            "source_format": w.source_format,
            "wafer_index": w.wafer_index,
            "program": w.program,
            "part_type": w.part_type,
            "die_count": w.die_count,
            "pass_count": w.pass_count,
            "fail_count": w.fail_count,
            "yield_fraction": w.yield_fraction,
            "map": {"rows": w.map_rows, "cols": w.map_cols, "blob": w.map_blob},
            "extra": w.extra or {},
        },
        "heatmap": None
        if d.heatmap is None
        else {
            "rows": d.heatmap.rows,
            "cols": d.heatmap.cols,
            "target_class": d.heatmap.target_class,
            "method": d.heatmap.method,
        },
        "queue": None
        if d.queue is None
        else {"state": d.queue.state, "reason": d.queue.reason, "priority": d.queue.priority},
        "label": None
        if d.label is None
        else {
            "pattern": d.label.pattern,
            "root_cause": d.label.root_cause,
            "labelled_by": d.label.labelled_by,
            "labelled_at": iso(d.label.labelled_at),
        },
        "reviews": [
            {
                "reviewer": v.reviewer,
                "action": v.action,
                "pattern": v.pattern,
                "root_cause": v.root_cause,
                "comment": v.comment,
                "created_at": iso(v.created_at),
            }
            for v in d.reviews
        ],
    }


def load_detail(hub: Hub, result_id: str) -> WaferDetail:
    with hub.db.session() as s:
        detail = wafer_detail(s, result_id)
    if detail is None:
        raise NotFoundException(f"no result {result_id}")
    return detail


def alert_json(a: AlertRow) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "source": a.source,
        "device_id": a.device_id,
        "rule_id": a.rule_id,
        "rule_kind": a.rule_kind,
        "severity": a.severity,
        "title": a.title,
        "message": a.message,
        "raised_time": iso(a.raised_time),
        "pattern": a.pattern,
        "tester_id": a.tester_id,
        "lot_id": a.lot_id,
        "wafer_id": a.wafer_id,
        "related_result_ids": a.related_result_ids or [],
        "acknowledged": a.acknowledged,
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_time": iso(a.acknowledged_time),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "channel": d.channel,
        "state": d.state,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": iso(d.next_attempt_at),
        "delivered_at": iso(d.delivered_at),
    }


def device_json(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "site": d.site,
        "state": d.state,
        "last_seen": iso(d.last_seen),
        "state_since": iso(d.state_since),
        "model_version": d.model_version,
        "agent_version": d.agent_version,
        "outbox_depth": d.outbox_depth,
        "degraded_reasons": d.degraded_reasons or [],
        "result_sequence_max": d.result_sequence_max,
    }
