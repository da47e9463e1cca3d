"""Which results enter the review queue, and in what order: the selector interface.

The default :class:`UncertaintyFirst` queues low-confidence results, results the edge flagged,
and a sampled share of confident ones (an audit sample that measures drift). Priorities put
uncertainty first: every low-confidence result comes before every edge-flagged one, which comes
before every audit sample; inside a group the less confident comes first. An active-learning
selector (a later step) implements :class:`QueueSelector` and replaces it in ``app.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Protocol

from waferscope.hub.config import ReviewConfig
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.pb.result_pb2 import WaferResult

LOW_CONFIDENCE: Final = "low_confidence"
EDGE_FLAGGED: Final = "edge_flagged"
AUDIT: Final = "audit"
UPLOAD: Final = "upload"

_GROUP_OFFSET: Final = {LOW_CONFIDENCE: 3.0, EDGE_FLAGGED: 2.0, UPLOAD: 2.0, AUDIT: 1.0}


@dataclass(frozen=True, slots=True)
class QueueDecision:
    """Queue the result with this priority (higher first) for this reason."""

    priority: float
    reason: str


class QueueSelector(Protocol):
    """Decides, for each new result, whether it is reviewed and how urgently."""

    def select(self, result: WaferResult) -> QueueDecision | None:
        """A decision to queue the result, or None to leave it out of the queue."""
        ...


def sampled(result_id: str, rate: float) -> bool:
    """A deterministic coin: the same result id always gives the same answer."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(result_id.encode("ascii", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class UncertaintyFirst:
    """The default selector (see the module text)."""

    def __init__(self, config: ReviewConfig) -> None:
        self.threshold = config.threshold
        self.include_edge_flagged = config.include_edge_flagged
        self.sample_rate = config.sample_rate

    def select(self, result: WaferResult) -> QueueDecision | None:
        uncertainty = min(max(1.0 - float(result.confidence), 0.0), 1.0)
        if result.confidence < self.threshold:
            reason = LOW_CONFIDENCE
        elif self.include_edge_flagged and (
            result.review_required or result.review_reason != result_pb2.REVIEW_REASON_UNSPECIFIED
        ):
            reason = EDGE_FLAGGED
        elif sampled(result.result_id, self.sample_rate):
            reason = AUDIT
        else:
            return None
        return QueueDecision(priority=_GROUP_OFFSET[reason] + uncertainty, reason=reason)
