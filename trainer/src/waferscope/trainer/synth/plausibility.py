"""Physical plausibility of generated maps: dies only on the wafer, legal values, edge exclusion.

Generators emit probabilities of a die and of a fail per grid cell. :func:`project` turns them
into a wafer map that is plausible by construction (no die outside the wafer disc or inside the
edge-exclusion ring, values in {0, 1, 2}, fails only on dies, the requested fail density);
:func:`check` rejects samples whose raw output disagrees too much with that projection, and
:class:`PlausibilityReport` gives the rejection rate and its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

Grid = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]


class PlausibilityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edge_exclusion: float = Field(
        0.0, ge=0.0, description="Width of the ring inside the wafer edge that holds no die."
    )
    max_outside: float = Field(
        0.02, ge=0.0, le=1.0, description="Reject when this share of the die mass lies outside."
    )
    min_coverage: float = Field(
        0.6, ge=0.0, le=1.0, description="Reject when dies cover less of the wafer disc."
    )
    min_fails: int = Field(1, ge=0, description="A defect-class map needs this many fails.")


def wafer_disc(size: int, edge_exclusion: float = 0.0) -> Mask:
    """Cells whose centre lies inside the wafer circle inscribed in a size x size grid.

    A map resized to the grid fills its square edge to edge, and its square dies reach a little
    past the inscribed circle: the radius is 17/32 of the size (34 cells at 64, which holds every
    die of 99.5% of the real Scratch/Loc/Donut training maps), less the edge-exclusion width.
    """
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    radius = size * 17.0 / 32.0 - edge_exclusion
    return np.asarray((yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2)


def project(
    probs: npt.NDArray[np.float32],
    cfg: PlausibilityConfig,
    density: npt.NDArray[np.float32] | None = None,
) -> list[Grid]:
    """(N, 2, S, S) die/fail probabilities -> N grids in {0, 1, 2} with dies only on the wafer.

    A die is a cell on the wafer (inside the exclusion ring) with die probability >= 0.5. With
    ``density`` (the requested fail share of each map) the fails are the ``round(density * dies)``
    dies of highest fail probability, so the density condition holds exactly; without it, the
    dies with fail probability >= 0.5.
    """
    n = probs.shape[0]
    if n == 0:
        return []
    disc = wafer_disc(probs.shape[-1], cfg.edge_exclusion)
    die = (probs[:, 0] >= 0.5) & disc
    if density is None:
        fail = (probs[:, 1] >= 0.5) & die
    else:
        score = np.where(die, probs[:, 1], -1.0).reshape(n, -1)
        want = np.rint(np.asarray(density) * die.reshape(n, -1).sum(1)).astype(np.int64)
        order = np.argsort(-score, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(score.shape[1])[None, :].repeat(n, 0), axis=1)
        fail = (ranks < want[:, None]).reshape(die.shape) & die
    grids = die.astype(np.uint8) + fail.astype(np.uint8)
    return list(grids)


@dataclass
class PlausibilityReport:
    """Counts of checked and rejected samples, with the reason of each rejection."""

    checked: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.checked if self.checked else 0.0

    def add(self, other: PlausibilityReport) -> None:
        self.checked += other.checked
        self.rejected += other.rejected
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v

    def to_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "rejected": self.rejected,
            "rejection_rate": round(self.rejection_rate, 4),
            "reasons": dict(self.reasons),
        }


def check(
    probs: npt.NDArray[np.float32],
    defect: npt.NDArray[np.bool_],
    cfg: PlausibilityConfig,
    density: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.bool_], PlausibilityReport]:
    """(accepted mask, report) for raw samples; ``defect`` marks maps that must show fails.

    Reasons: ``outside`` (die mass off the wafer or in the exclusion ring), ``coverage`` (too
    little of the wafer has dies), ``no_fails`` (a defect class without a fail die).
    """
    n, size = probs.shape[0], probs.shape[-1]
    disc = wafer_disc(size, cfg.edge_exclusion)
    die_mass = probs[:, 0].reshape(n, -1).sum(1)
    outside = probs[:, 0][:, ~disc].sum(1) / np.maximum(die_mass, 1e-6)
    grids = np.stack(project(probs, cfg, density)) if n else np.zeros((0, size, size), np.uint8)
    coverage = (grids > 0).reshape(n, -1).sum(1) / disc.sum()
    fails = (grids == 2).reshape(n, -1).sum(1)
    tests = {
        "outside": outside > cfg.max_outside,
        "coverage": coverage < cfg.min_coverage,
        "no_fails": defect & (fails < cfg.min_fails),
    }
    bad = np.zeros(n, dtype=bool)
    report = PlausibilityReport(checked=n)
    for name, hit in tests.items():
        first = hit & ~bad  # each rejection counted under its first reason
        if first.any():
            report.reasons[name] = int(first.sum())
        bad |= hit
    report.rejected = int(bad.sum())
    return ~bad, report


def is_plausible(grid: Grid, edge_exclusion: float = 0.0) -> bool:
    """True when a grid holds only 0/1/2 and no die outside the wafer disc or exclusion ring."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1]:
        return False
    if not np.isin(grid, (0, 1, 2)).all():
        return False
    return not bool((grid[~wafer_disc(grid.shape[0], edge_exclusion)] > 0).any())
