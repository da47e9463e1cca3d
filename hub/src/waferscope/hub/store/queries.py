"""The read queries of the UI and the API: lists with filters, one wafer, trends, facets.

Lists page by keyset (``before`` = the last row's (time, id) of the previous page), so a page deep
in a million results costs what the first page costs. Every filter has an index behind it (see
``db/schema.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from waferscope.hub.db.schema import (
    Device,
    Heatmap,
    Label,
    Result,
    Review,
    ReviewItem,
    Tester,
    Wafer,
)
from waferscope.hub.store.sql import day_bucket

PATTERN_CLASSES = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)
"""The WM-811K classes of the default taxonomy (offered in forms even before any result)."""


@dataclass(frozen=True, slots=True)
class ResultFilter:
    tester: str | None = None
    lot: str | None = None
    pattern: str | None = None
    model_version: str | None = None
    device: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        conditions = []
        if self.tester:
            conditions.append(Result.tester_id == self.tester)
        if self.lot:
            conditions.append(Result.lot_id == self.lot)
        if self.pattern:
            conditions.append(Result.pattern == self.pattern)
        if self.model_version:
            conditions.append(Result.model_version == self.model_version)
        if self.device:
            conditions.append(Result.device_id == self.device)
        if self.date_from:
            conditions.append(Result.classified_time >= self.date_from)
        if self.date_to:
            conditions.append(Result.classified_time < self.date_to)
        return stmt.where(and_(*conditions)) if conditions else stmt


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: strictly older than (time, result id)."""

    time: datetime
    result_id: str

    def token(self) -> str:
        return f"{self.time.isoformat()}~{self.result_id}"

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        if not token or "~" not in token:
            return None
        when, _, rid = token.partition("~")
        try:
            return cls(datetime.fromisoformat(when), rid)
        except ValueError:
            return None


@dataclass(slots=True)
class Page:
    rows: list[Result]
    next: Cursor | None = None
    labels: dict[str, str] = field(default_factory=dict)  # wafer_ref -> label pattern


def list_results(
    session: Session, flt: ResultFilter, *, limit: int = 50, before: Cursor | None = None
) -> Page:
    stmt = flt.apply(select(Result))
    if before is not None:
        stmt = stmt.where(
            or_(
                Result.classified_time < before.time,
                and_(Result.classified_time == before.time, Result.result_id < before.result_id),
            )
        )
    stmt = stmt.order_by(Result.classified_time.desc(), Result.result_id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = Cursor(rows[-1].classified_time, rows[-1].result_id)
    refs = [r.wafer_ref for r in rows]
    labels: dict[str, str] = {}
    if refs:
        q = select(Label.wafer_ref, Label.pattern).where(Label.wafer_ref.in_(refs))
        labels = {str(ref): str(pattern) for ref, pattern in session.execute(q)}
    return Page(rows, nxt, labels)


@dataclass(slots=True)
class QueueRow:
    item: ReviewItem
    result: Result


def list_queue(
    session: Session, *, limit: int = 50, offset: int = 0, state: str = "open"
) -> list[QueueRow]:
    stmt = (
        select(ReviewItem, Result)
        .join(Result, Result.result_id == ReviewItem.result_id)
        .where(ReviewItem.state == state)
        .order_by(ReviewItem.priority.desc(), ReviewItem.enqueued_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return [QueueRow(item, result) for item, result in session.execute(stmt)]


def queue_counts(session: Session) -> dict[str, int]:
    stmt = (
        select(ReviewItem.reason, func.count())
        .where(ReviewItem.state == "open")
        .group_by(ReviewItem.reason)
    )
    return {reason: int(n) for reason, n in session.execute(stmt)}


def next_in_queue(session: Session, *, exclude: str | None = None) -> str | None:
    """The result id at the head of the open queue (skipping ``exclude``)."""
    stmt = select(ReviewItem.result_id).where(ReviewItem.state == "open")
    if exclude:
        stmt = stmt.where(ReviewItem.result_id != exclude)
    stmt = stmt.order_by(ReviewItem.priority.desc(), ReviewItem.enqueued_at.desc()).limit(1)
    return session.scalar(stmt)


@dataclass(slots=True)
class WaferDetail:
    result: Result
    wafer: Wafer
    heatmap: Heatmap | None
    queue: ReviewItem | None
    label: Label | None
    reviews: list[Review]
    other_results: list[Result]  # other classifications of the same wafer
    lot_results: list[Result]  # the other wafers of the lot (context)


def wafer_detail(session: Session, result_id: str, *, lot_limit: int = 50) -> WaferDetail | None:
    result = session.get(Result, result_id)
    if result is None:
        return None
    wafer = session.get(Wafer, result.wafer_ref)
    assert wafer is not None  # a foreign key
    reviews = list(
        session.scalars(
            select(Review).where(Review.result_id == result_id).order_by(Review.created_at.desc())
        )
    )
    others = list(
        session.scalars(
            select(Result)
            .where(Result.wafer_ref == result.wafer_ref, Result.result_id != result_id)
            .order_by(Result.classified_time.desc())
        )
    )
    lot: list[Result] = []
    if result.lot_id:
        lot = list(
            session.scalars(
                select(Result)
                .where(Result.lot_id == result.lot_id, Result.result_id != result_id)
                .order_by(Result.classified_time.desc())
                .limit(lot_limit)
            )
        )
    return WaferDetail(
        result=result,
        wafer=wafer,
        heatmap=session.get(Heatmap, result_id),
        queue=session.get(ReviewItem, result_id),
        label=session.get(Label, result.wafer_ref),
        reviews=reviews,
        other_results=others,
        lot_results=lot,
    )


@dataclass(frozen=True, slots=True)
class TrendPoint:
    day: str
    pattern: str
    count: int


def pattern_trend(
    session: Session, *, tester: str, days: int = 30, now: datetime
) -> tuple[list[str], dict[str, list[int]], list[int]]:
    """(days, per-pattern daily counts, daily totals) for one tester over the last ``days``."""
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    dialect = session.get_bind().dialect.name
    bucket = day_bucket(dialect, Result.classified_time).label("day")
    stmt = (
        select(bucket, Result.pattern, func.count())
        .where(Result.tester_id == tester, Result.classified_time >= since)
        .group_by(bucket, Result.pattern)
    )
    labels = [(since + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    position = {d: i for i, d in enumerate(labels)}
    series: dict[str, list[int]] = {}
    totals = [0] * days
    for day, pattern, count in session.execute(stmt):
        i = position.get(str(day)[:10])
        if i is None:
            continue
        series.setdefault(pattern or "?", [0] * days)[i] += int(count)
        totals[i] += int(count)
    return labels, dict(sorted(series.items())), totals


def testers(session: Session) -> list[str]:
    return list(session.scalars(select(Tester.tester_id).order_by(Tester.tester_id)))


def recent_values(session: Session, column: Any, *, sample: int = 5000) -> list[str]:
    """Distinct values of a result column among the newest ``sample`` results (for filters)."""
    recent = (
        select(column.label("v")).order_by(Result.classified_time.desc()).limit(sample).subquery()
    )
    return sorted(v for v in session.scalars(select(recent.c.v).distinct()) if v)


def devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.device_id)))


def count_results(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Result)) or 0)
