"""Reviews and labels: a reviewer confirms or corrects a result; the label is the ground truth.

A label of a wafer an edge classified also goes back to that edge (its federated training
data): :func:`submit_review` queues a ``WaferLabel`` in ``label_dispatch`` in the same
transaction, and the label publisher (``hub/ingest/label_publisher.py``) sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from waferscope.hub.config import TrainingConfig
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Device, Label, LabelDispatch, Result, Review, ReviewItem
from waferscope.hub.store.audit import audit
from waferscope.hub.store.queries import next_in_queue
from waferscope.hub.store.training import maybe_trigger
from waferscope.protocols import messages
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import label_pb2

if TYPE_CHECKING:
    from waferscope.hub.db.engine import Database


class ReviewError(WaferscopeError):
    """A review cannot be recorded (unknown result, empty pattern, ...)."""


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    review_id: int
    action: str  # confirm | correct
    changed: bool  # the wafer's label changed (or it had none before)


def submit_review(
    session: Session,
    result_id: str,
    *,
    reviewer: str,
    pattern: str,
    root_cause: str = "",
    comment: str = "",
    remote_addr: str = "",
) -> ReviewOutcome:
    """Record a decision, set the wafer's label, close its queue item, write the audit entry."""
    pattern = pattern.strip()
    if not pattern:
        raise ReviewError("a review needs a pattern")
    result = session.get(Result, result_id)
    if result is None:
        raise ReviewError(f"no result {result_id}")
    now = utcnow()
    root_cause = root_cause.strip() or result.root_cause
    action = (
        "confirm" if pattern == result.pattern and root_cause == result.root_cause else "correct"
    )
    review = Review(
        result_id=result_id,
        reviewer=reviewer,
        action=action,
        pattern=pattern,
        root_cause=root_cause,
        predicted_pattern=result.pattern,
        comment=comment.strip(),
        created_at=now,
    )
    session.add(review)
    session.flush()
    label = session.get(Label, result.wafer_ref)
    before = None if label is None else {"pattern": label.pattern, "root_cause": label.root_cause}
    if label is None:
        label = Label(wafer_ref=result.wafer_ref)
        session.add(label)
    label.result_id = result_id
    label.pattern = pattern
    label.root_cause = root_cause
    label.review_id = review.id
    label.labelled_by = reviewer
    label.labelled_at = now
    item = session.get(ReviewItem, result_id)
    if item is not None and item.state == "open":
        item.state = "done"
        item.closed_at = now
        item.closed_by = reviewer
    after = {"pattern": pattern, "root_cause": root_cause}
    changed = before != after
    if result.origin == "edge":
        queue_label_for_edge(session, result, review, now)
    audit(
        session,
        reviewer,
        "label.set" if before is None else ("label.change" if changed else "label.confirm"),
        result_id,
        {"before": before, "after": after, "action": action, "comment": review.comment},
        remote_addr=remote_addr,
    )
    return ReviewOutcome(review.id, action, changed)


def queue_label_for_edge(session: Session, result: Result, review: Review, now: datetime) -> None:
    """Queue the label for the edge that produced the wafer (sent by the label publisher)."""
    stamp = Timestamp()
    stamp.FromDatetime(now.replace(tzinfo=UTC) if now.tzinfo is None else now)
    label = label_pb2.WaferLabel(
        schema_version=messages.SCHEMA_VERSION,
        label_id=messages.new_message_id(),
        device_id=result.device_id,
        result_id=result.result_id,
        pattern=review.pattern,
        root_cause=review.root_cause,
        action=review.action,
        labelled_by=review.reviewer,
        source=label_pb2.LABEL_SOURCE_HUB_REVIEW,
        labelled_time=stamp,
    )
    device = session.get(Device, result.device_id)
    session.add(
        LabelDispatch(
            label_id=label.label_id,
            result_id=result.result_id,
            device_id=result.device_id,
            site=device.site if device is not None else None,
            payload=label.SerializeToString(),
            created_at=now,
            attempts=0,
        )
    )


@dataclass(frozen=True, slots=True)
class ReviewStep:
    """A recorded review and the result the reviewer goes on to (None: the queue is empty)."""

    outcome: ReviewOutcome
    next_id: str | None


def review_and_advance(
    db: Database,
    result_id: str,
    *,
    reviewer: str,
    pattern: str,
    root_cause: str = "",
    comment: str = "",
    remote_addr: str = "",
    training: TrainingConfig | None = None,
) -> ReviewStep:
    """The one review-submit path of the form and the API: validate and record the review (label,
    queue item, audit, the label queued for its edge) in one transaction, queue a training job
    when ``training``'s label trigger is reached, and name the next result in the queue.

    Raises ReviewError (nothing written) when the review cannot be recorded."""
    with db.session(write=True) as s:
        outcome = submit_review(
            s,
            result_id,
            reviewer=reviewer,
            pattern=pattern,
            root_cause=root_cause,
            comment=comment,
            remote_addr=remote_addr,
        )
        if training is not None:
            maybe_trigger(s, training)
        return ReviewStep(outcome, next_in_queue(s, exclude=result_id))


def skip(session: Session, result_id: str, *, reviewer: str) -> bool:
    """Take a result out of the open queue without a label."""
    item = session.get(ReviewItem, result_id)
    if item is None or item.state != "open":
        return False
    item.state = "skipped"
    item.closed_at = utcnow()
    item.closed_by = reviewer
    audit(session, reviewer, "queue.skip", result_id)
    return True
