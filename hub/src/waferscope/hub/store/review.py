"""Reviews and labels: a reviewer confirms or corrects a result; the label is the ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Label, Result, Review, ReviewItem
from waferscope.hub.store.audit import audit
from waferscope.hub.store.queries import next_in_queue
from waferscope.protocols.errors import WaferscopeError

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
    audit(
        session,
        reviewer,
        "label.set" if before is None else ("label.change" if changed else "label.confirm"),
        result_id,
        {"before": before, "after": after, "action": action, "comment": review.comment},
        remote_addr=remote_addr,
    )
    return ReviewOutcome(review.id, action, changed)


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
) -> ReviewStep:
    """The one review-submit path of the form and the API: validate and record the review (label,
    queue item, audit) in one transaction and name the next result in the queue.

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
