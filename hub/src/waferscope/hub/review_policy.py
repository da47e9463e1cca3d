"""Which results enter the review queue, and in what order: the selector interface.

The default :class:`UncertaintyFirst` queues low-confidence results, results the edge flagged,
and a sampled share of confident ones (an audit sample that measures drift). Priorities put
uncertainty first: every low-confidence result comes before every edge-flagged one, which comes
before every audit sample; inside a group the less confident comes first.

The active-learning selectors rank by the entropy of the class distribution
(:class:`EntropyFirst`) and add k-center diversity over the engine's embeddings
(:class:`EntropyDiverse`). ``SELECTORS`` is the registry that ``review.selector`` names.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from waferscope.hub.config import ReviewConfig
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.pb.result_pb2 import WaferResult

LOW_CONFIDENCE: Final = "low_confidence"
EDGE_FLAGGED: Final = "edge_flagged"
AUDIT: Final = "audit"
UPLOAD: Final = "upload"
ENTROPY: Final = "entropy"
DIVERSE: Final = "diverse"

_GROUP_OFFSET: Final = {
    ENTROPY: 3.0,
    DIVERSE: 3.0,
    LOW_CONFIDENCE: 3.0,
    EDGE_FLAGGED: 2.0,
    UPLOAD: 2.0,
    AUDIT: 1.0,
}


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


class SelectorError(WaferscopeError):
    """The configuration names no known queue selector."""


def sampled(result_id: str, rate: float) -> bool:
    """A deterministic coin: the same result id always gives the same answer."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(result_id.encode("ascii", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class UncertaintyFirst:
    """The default selector, ``uncertainty_first`` (see the module text)."""

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


def class_probabilities(result: WaferResult) -> npt.NDArray[np.float64]:
    """The pattern head's distribution (empty when the edge sent only the top class)."""
    return np.asarray([p.probability for p in result.pattern.distribution], dtype=np.float64)


def normalized_entropy(probabilities: npt.NDArray[np.float64]) -> float:
    """Shannon entropy over the classes divided by its maximum, log(K): 0 sure .. 1 uniform.

    NaN for fewer than two classes or no probability mass (no distribution to judge).
    """
    total = float(probabilities.sum())
    if probabilities.size < 2 or total <= 0:
        return float("nan")
    p = probabilities[probabilities > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(probabilities.size))


def entropy_of(result: WaferResult) -> float:
    """The result's normalised entropy; ``1 - confidence`` when it carries no distribution."""
    value = normalized_entropy(class_probabilities(result))
    if np.isnan(value):
        return min(max(1.0 - float(result.confidence), 0.0), 1.0)
    return value


def k_center_greedy(
    pool: npt.NDArray[np.float32],
    budget: int,
    centers: npt.NDArray[np.float32] | None = None,
) -> list[int]:
    """Indices of ``budget`` pool rows chosen by k-center greedy (Sener & Savarese, 2018).

    Each step takes the pool row farthest (Euclidean) from every centre chosen so far, starting
    from ``centers`` (already labelled rows); without centres the first pick is row 0 (the
    caller orders the pool, e.g. by entropy). O(budget x pool) time, O(pool) memory.
    """
    n = len(pool)
    if n == 0 or budget <= 0:
        return []
    x = np.asarray(pool, dtype=np.float32)
    if centers is not None and len(centers):
        c = np.asarray(centers, dtype=np.float32)
        nearest = np.full(n, np.inf, dtype=np.float32)
        for start in range(0, len(c), 1024):  # bounded memory: 1024 x pool distances at a time
            block = c[start : start + 1024]
            d = ((x[:, None, :] - block[None, :, :]) ** 2).sum(axis=2)
            nearest = np.minimum(nearest, d.min(axis=1))
        chosen: list[int] = []
    else:
        chosen = [0]
        nearest = ((x - x[0]) ** 2).sum(axis=1)
    while len(chosen) < min(budget, n):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((x - x[pick]) ** 2).sum(axis=1))
    return chosen


class EntropyFirst:
    """Queue results whose class distribution is uncertain (normalised entropy above a floor).

    Priority is the entropy itself, so the most confused results come first; edge-flagged
    results and the audit sample are queued as in the default rule, below every entropy pick.
    """

    def __init__(self, config: ReviewConfig) -> None:
        self.entropy_threshold = config.entropy_threshold
        self.fallback = UncertaintyFirst(config.model_copy(update={"threshold": 0.0}))

    def score(self, result: WaferResult) -> float:
        return entropy_of(result)

    def select(self, result: WaferResult) -> QueueDecision | None:
        entropy = self.score(result)
        if entropy >= self.entropy_threshold:
            return QueueDecision(priority=_GROUP_OFFSET[LOW_CONFIDENCE] + entropy, reason=ENTROPY)
        return self.fallback.select(result)


class EntropyDiverse(EntropyFirst):
    """Entropy, then k-center diversity over the engine's embeddings.

    Streaming form of k-center greedy: the selector keeps the embeddings of the last
    ``diversity_pool`` results it queued (the centres). An uncertain result's priority is its
    entropy times its distance to the nearest centre, scaled by the median centre spacing and
    capped at 1, so a near-duplicate of a wafer already waiting for review sinks below a new
    kind of wafer of the same entropy. Results without an embedding keep their plain entropy.
    The centres live in memory, so they start empty after a restart.
    """

    def __init__(self, config: ReviewConfig) -> None:
        super().__init__(config)
        self.pool_size = config.diversity_pool
        self._centres: deque[npt.NDArray[np.float32]] = deque(maxlen=self.pool_size)
        self._lock = threading.Lock()

    def diversity(self, embedding: npt.NDArray[np.float32]) -> float:
        """0 (a copy of a queued wafer) .. 1 (at least the typical spacing from every one)."""
        with self._lock:
            if len(self._centres) < 2:
                return 1.0
            c = np.stack(self._centres)
        nearest = float(np.sqrt(((c - embedding) ** 2).sum(axis=1).min()))
        spacing = np.sqrt(((c[1:] - c[:-1]) ** 2).sum(axis=1))
        scale = float(np.median(spacing))
        return 1.0 if scale <= 0 else min(nearest / scale, 1.0)

    def select(self, result: WaferResult) -> QueueDecision | None:
        entropy = self.score(result)
        if entropy < self.entropy_threshold:
            return self.fallback.select(result)
        if not result.embedding:
            return QueueDecision(priority=_GROUP_OFFSET[LOW_CONFIDENCE] + entropy, reason=ENTROPY)
        embedding = np.asarray(result.embedding, dtype=np.float32)
        spread = self.diversity(embedding)
        with self._lock:
            if not self._centres or len(self._centres[0]) == len(embedding):
                self._centres.append(embedding)
            else:  # another model version, another embedding space: start over
                self._centres.clear()
                self._centres.append(embedding)
        return QueueDecision(
            priority=_GROUP_OFFSET[LOW_CONFIDENCE] + entropy * spread, reason=DIVERSE
        )


SELECTORS: Final[dict[str, Callable[[ReviewConfig], QueueSelector]]] = {
    "uncertainty_first": UncertaintyFirst,
    "entropy": EntropyFirst,
    "entropy_kcenter": EntropyDiverse,
}


def build_selector(config: ReviewConfig) -> QueueSelector:
    """The selector the configuration names (``review.selector``)."""
    try:
        factory = SELECTORS[config.selector]
    except KeyError:
        raise SelectorError(
            f"review.selector {config.selector!r} is not one of {sorted(SELECTORS)}"
        ) from None
    return factory(config)
