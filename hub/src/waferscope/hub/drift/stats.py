"""Two-sample drift statistics: class histograms (chi-square, Jensen–Shannon, PSI), embeddings
(MMD² with an RBF kernel and a permutation test), and multiple-test corrections."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial.distance import jensenshannon

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HistogramDrift:
    """Reference vs current class counts: chi-square test of homogeneity, JS distance, PSI."""

    classes: tuple[str, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]
    chi2: float
    p_value: float
    js_distance: float  # base 2: 0 (same) .. 1 (disjoint)
    psi: float


@dataclass(frozen=True, slots=True)
class EmbeddingDrift:
    """MMD² (unbiased, RBF kernel) between two embedding samples and its permutation p-value."""

    mmd2: float
    p_value: float
    bandwidth: float
    reference_n: int
    current_n: int
    permutations: int


def align(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[tuple[str, ...], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Both histograms over the union of their classes (sorted)."""
    classes = tuple(sorted(set(reference) | set(current)))
    ref = np.array([int(reference.get(c, 0)) for c in classes], dtype=np.int64)
    cur = np.array([int(current.get(c, 0)) for c in classes], dtype=np.int64)
    return classes, ref, cur


def psi(
    reference: Sequence[int] | npt.NDArray[np.int64],
    current: Sequence[int] | npt.NDArray[np.int64],
    *,
    floor: float = 1e-4,
) -> float:
    """Population stability index Σ (c − r)·ln(c / r) over class shares, shares floored at
    ``floor`` so a class absent from one window counts finitely (< 0.1 stable, > 0.25 shifted)."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.sum() <= 0 or c.sum() <= 0:
        return 0.0
    rs = np.maximum(r / r.sum(), floor)
    cs = np.maximum(c / c.sum(), floor)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def histogram_drift(reference: Mapping[str, int], current: Mapping[str, int]) -> HistogramDrift:
    """Chi-square test that both windows draw classes from one distribution (classes seen in
    neither window are left out; with fewer than two classes the test cannot reject: p = 1)."""
    classes, ref, cur = align(reference, current)
    seen = (ref + cur) > 0
    chi2, p = 0.0, 1.0
    if seen.sum() >= 2 and ref.sum() > 0 and cur.sum() > 0:
        res = stats.chi2_contingency(np.vstack([ref[seen], cur[seen]]), correction=False)
        chi2, p = float(res.statistic), float(res.pvalue)
    js = 0.0
    if ref.sum() > 0 and cur.sum() > 0:
        js = float(jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))
    return HistogramDrift(
        classes,
        tuple(int(x) for x in ref),
        tuple(int(x) for x in cur),
        chi2,
        p,
        0.0 if np.isnan(js) else js,
        psi(ref, cur),
    )


# --------------------------------------------------------------------------- corrections
def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(x) for x in out]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error rate), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * (n - np.arange(n))
    adjusted = np.maximum.accumulate(ranked)
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(x) for x in out]


def uncorrected(p_values: Sequence[float]) -> list[float]:
    """The p-values as they are (correction 'none')."""
    return [float(x) for x in p_values]


CORRECTIONS: dict[str, Callable[[Sequence[float]], list[float]]] = {
    "bh": benjamini_hochberg,
    "holm": holm,
    "none": uncorrected,
}
"""Correction methods by their configuration name."""


# --------------------------------------------------------------------------- embeddings
def _sq_distances(z: Floats) -> Floats:
    sq = np.einsum("ij,ij->i", z, z)
    d = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    return np.asarray(np.maximum(d, 0.0), dtype=np.float64)


def _mmd2_batch(k0: Floats, first: npt.NDArray[np.bool_], n: int, m: int) -> Floats:
    """Unbiased MMD² for each row of ``first`` (True: the row's first sample), from the kernel
    matrix with a zero diagonal: one matrix product for all the splits."""
    a = first.astype(np.float64)
    ak = a @ k0
    xx = np.einsum("ij,ij->i", ak, a)
    xy = ak.sum(axis=1) - xx
    yy = k0.sum() - xx - 2.0 * xy
    return np.asarray(xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m))


def mmd_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    permutations: int = 200,
    max_samples: int = 300,
    seed: int = 0,
) -> EmbeddingDrift:
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median pairwise distance of the
    pooled sample; p-value (1 + exceeding) / (1 + ``permutations``) from random relabellings, so
    it is never below 1 / (1 + permutations). Each sample is randomly
    subsampled to ``max_samples`` rows, so the cost is bounded by O(permutations ·
    (2·max_samples)²) whatever the window sizes."""
    rng = np.random.default_rng(seed)
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be two (n, d) arrays of one d: {x.shape} vs {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least two embeddings")
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    z = np.vstack([x, y])
    d2 = _sq_distances(z)
    upper = d2[np.triu_indices(len(z), k=1)]
    median = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    k0 = np.exp(-d2 / median)  # exp(-|a-b|² / σ²) with σ² the median squared distance
    np.fill_diagonal(k0, 0.0)
    n, m = len(x), len(y)
    split = np.zeros((1, n + m), dtype=bool)
    split[0, :n] = True
    observed = float(_mmd2_batch(k0, split, n, m)[0])
    exceed = 0
    for start in range(0, permutations, 256):
        rows = min(256, permutations - start)
        keys = rng.random((rows, n + m))
        first = keys < np.sort(keys, axis=1)[:, n : n + 1]  # n random members per row
        exceed += int(np.count_nonzero(_mmd2_batch(k0, first, n, m) >= observed))
    return EmbeddingDrift(
        observed,
        (exceed + 1) / (permutations + 1),
        float(np.sqrt(median)),
        len(x),
        len(y),
        permutations,
    )
