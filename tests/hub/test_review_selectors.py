"""Queue selectors: the registry, entropy ranking and k-center diversity over embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from waferscope.hub.config import ReviewConfig
from waferscope.hub.review_policy import (
    DIVERSE,
    ENTROPY,
    SELECTORS,
    EntropyDiverse,
    EntropyFirst,
    SelectorError,
    UncertaintyFirst,
    build_selector,
    k_center_greedy,
    normalized_entropy,
)
from waferscope.protocols.pb.result_pb2 import WaferResult


def _result(
    probs: list[float], embedding: list[float] | None = None, rid: str = "r"
) -> WaferResult:
    r = WaferResult(result_id=rid, confidence=max(probs))
    r.pattern.probability = max(probs)
    for i, p in enumerate(probs):
        r.pattern.distribution.add(probability=p, name=f"c{i}")
    if embedding is not None:
        r.embedding.extend(embedding)
    return r


def test_registry_builds_each_selector_from_config() -> None:
    assert isinstance(build_selector(ReviewConfig()), UncertaintyFirst)
    assert isinstance(build_selector(ReviewConfig(selector="entropy")), EntropyFirst)
    assert isinstance(build_selector(ReviewConfig(selector="entropy_kcenter")), EntropyDiverse)
    assert set(SELECTORS) == {"uncertainty_first", "entropy", "entropy_kcenter"}
    bad = ReviewConfig.model_construct(selector="nope")
    with pytest.raises(SelectorError, match="nope"):
        build_selector(bad)


def test_normalized_entropy_bounds() -> None:
    assert normalized_entropy(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0)
    assert normalized_entropy(np.array([0.25] * 4)) == pytest.approx(1.0)
    assert np.isnan(normalized_entropy(np.array([1.0])))


def test_entropy_selector_queues_confused_results_first() -> None:
    sel = EntropyFirst(ReviewConfig(selector="entropy", entropy_threshold=0.3, sample_rate=0))
    sure = sel.select(_result([0.97, 0.01, 0.01, 0.01]))
    split = sel.select(_result([0.5, 0.5, 0.0, 0.0]))
    flat = sel.select(_result([0.3, 0.3, 0.2, 0.2]))
    assert sure is None
    assert split is not None and flat is not None
    assert split.reason == flat.reason == ENTROPY
    assert flat.priority > split.priority


def test_entropy_selector_without_distribution_uses_confidence() -> None:
    sel = EntropyFirst(ReviewConfig(selector="entropy", entropy_threshold=0.5, sample_rate=0))
    assert sel.select(WaferResult(result_id="a", confidence=0.2)) is not None
    assert sel.select(WaferResult(result_id="b", confidence=0.9)) is None


def test_kcenter_selector_ranks_a_near_duplicate_below_a_new_kind() -> None:
    sel = EntropyDiverse(
        ReviewConfig(selector="entropy_kcenter", entropy_threshold=0.3, sample_rate=0)
    )
    probs = [0.4, 0.3, 0.3]
    rng = np.random.default_rng(0)
    for i in range(8):  # a cluster of queued wafers around the origin
        d = sel.select(_result(probs, list(rng.normal(0, 1, 4)), rid=f"q{i}"))
        assert d is not None
    near = sel.select(_result(probs, [0.01, 0.0, 0.0, 0.01], rid="near"))
    far = sel.select(_result(probs, [40.0, 40.0, 40.0, 40.0], rid="far"))
    assert near is not None and far is not None
    assert near.reason == far.reason == DIVERSE
    assert far.priority > near.priority


def test_k_center_greedy_covers_clusters_before_repeating_one() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    pool = np.concatenate([c + rng.normal(0, 0.1, (25, 2)) for c in centres]).astype(np.float32)
    picks = k_center_greedy(pool, 4)
    assert len(set(picks)) == 4
    assert {p // 25 for p in picks} == {0, 1, 2, 3}
    # With the first two clusters labelled already, the next picks are the other two.
    more = k_center_greedy(pool, 2, centers=centres[:2])
    assert {p // 25 for p in more} == {2, 3}
    assert k_center_greedy(pool[:0], 3) == []
