"""Drift statistics against scipy and known values; drifted vs steady synthetic streams."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from waferscope.hub.drift.stats import (
    benjamini_hochberg,
    histogram_drift,
    holm,
    mmd_test,
    psi,
)

CLASSES = [
    "center",
    "donut",
    "edge-loc",
    "edge-ring",
    "loc",
    "near-full",
    "none",
    "random",
    "scratch",
]
STEADY = np.array([0.05, 0.02, 0.08, 0.1, 0.07, 0.01, 0.55, 0.02, 0.1])


def draw(p: np.ndarray, n: int, seed: int) -> dict[str, int]:
    counts = np.random.default_rng(seed).multinomial(n, p / p.sum())
    return {c: int(k) for c, k in zip(CLASSES, counts, strict=True) if k}


def test_chi_square_matches_scipy_and_a_hand_computed_value() -> None:
    h = histogram_drift({"a": 30, "b": 10}, {"a": 20, "b": 20})
    # 2 x 2 table, expected 25/15 per row: chi2 = 2·(25/25 + 25/15) = 5.333...
    assert h.chi2 == pytest.approx(16 / 3)
    assert h.p_value == pytest.approx(stats.chi2.sf(16 / 3, 1))
    ref, cur = draw(STEADY, 400, 1), draw(STEADY, 300, 2)
    h = histogram_drift(ref, cur)
    table = np.array([[ref.get(c, 0), cur.get(c, 0)] for c in h.classes]).T
    table = table[:, table.sum(axis=0) > 0]
    expected = stats.chi2_contingency(table, correction=False)
    assert h.p_value == pytest.approx(expected.pvalue)


def test_js_and_psi_known_values() -> None:
    same = histogram_drift({"a": 50, "b": 50}, {"a": 5, "b": 5})
    assert same.js_distance == pytest.approx(0.0, abs=1e-9)
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    disjoint = histogram_drift({"a": 10}, {"b": 10})
    assert disjoint.js_distance == pytest.approx(1.0)
    # PSI of 50/50 -> 80/20: 0.3·ln(0.8/0.5) + (-0.3)·ln(0.2/0.5)
    assert psi([50, 50], [80, 20]) == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4))


def test_a_single_class_cannot_reject() -> None:
    h = histogram_drift({"none": 100}, {"none": 80})
    assert h.p_value == 1.0
    assert h.classes == ("none",)


def test_drifted_class_stream_is_flagged_and_a_steady_one_is_not() -> None:
    drifted = STEADY.copy()
    drifted[CLASSES.index("scratch")] = 0.3  # a scratch excursion
    ref = draw(STEADY, 500, 10)
    assert histogram_drift(ref, draw(STEADY, 500, 11)).p_value > 0.01
    shifted = histogram_drift(ref, draw(drifted, 500, 12))
    assert shifted.p_value < 1e-4
    assert shifted.psi > 0.1


def test_corrections_match_known_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # BH: sorted 0.005, 0.01, 0.03, 0.04 -> ·4/1, 4/2, 4/3, 4/4 -> 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg(p) == pytest.approx(list(stats.false_discovery_control(p)))
    # Holm: 0.005·4, 0.01·3, 0.03·2, 0.04·1 with running maximum
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.3, 0.2]) == pytest.approx([0.4, 0.4])  # 0.2·2, then max(0.3·1, 0.4)
    assert benjamini_hochberg([]) == []


def test_mmd_flags_a_shifted_embedding_stream_and_not_a_steady_one() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(200, 16))
    same = rng.normal(size=(200, 16))
    moved = rng.normal(size=(200, 16)) + np.r_[np.full(4, 0.5), np.zeros(12)]
    steady = mmd_test(ref, same, permutations=99, max_samples=150, seed=1)
    shifted = mmd_test(ref, moved, permutations=99, max_samples=150, seed=1)
    assert steady.p_value > 0.05
    assert shifted.p_value == pytest.approx(1 / 100)  # no permutation reaches it
    assert shifted.mmd2 > steady.mmd2
    assert (shifted.reference_n, shifted.current_n) == (150, 150)  # subsampled
    assert shifted.bandwidth > 0


def test_mmd_refuses_mismatched_embeddings() -> None:
    with pytest.raises(ValueError, match="one d"):
        mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))


def test_mmd_statistic_is_the_unbiased_estimate() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(40, 5)) + 0.3
    e = mmd_test(x, y, permutations=19, max_samples=100)
    g = 2 * e.bandwidth**2  # exp(-d² / σ²) with σ² = median squared distance = bandwidth²

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (g / 2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (40 * 39)
        - 2 * kxy.mean()
    )
    assert e.mmd2 == pytest.approx(expected, rel=1e-9)
