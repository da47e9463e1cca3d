"""Validation of a parsed wafer: a quality report of typed findings, each with a severity.

Parsing answers "could the bytes be read?"; this module answers "does the wafer make sense?".
Nothing here raises on a bad wafer: the report says what is wrong, how badly and where, and a
``score`` in [0, 1] summarises it (1 = nothing found). Consumers decide what to refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from waferscope.protocols.wafermap import WaferMap

SAMPLE_DIES = 20  # how many example die coordinates a finding carries


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class FindingCode(StrEnum):
    EMPTY_WAFER = "empty_wafer"
    OUT_OF_GRID = "out_of_grid"
    DUPLICATE_DIE = "duplicate_die"
    OUTSIDE_WAFER = "outside_wafer"
    MISSING_METADATA = "missing_metadata"
    IMPLAUSIBLE_YIELD = "implausible_yield"
    PARTIAL_WAFER = "partial_wafer"
    TOO_FEW_DIES = "too_few_dies"
    TIME_ORDER = "time_order"
    INCONSISTENT_GEOMETRY = "inconsistent_geometry"


@dataclass(frozen=True, slots=True)
class Finding:
    code: FindingCode
    severity: Severity
    message: str
    count: int = 0
    dies: tuple[tuple[int, int], ...] = ()  # a sample of the affected (x, y), at most SAMPLE_DIES


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Limits of what is plausible; the defaults suit production wafer sort."""

    min_dies: int = 16  # fewer tested dies than this is suspicious for a whole wafer
    min_plausible_yield: float = 0.0  # a yield at or below this (with enough dies) is flagged
    edge_tolerance_dies: float = 0.75  # how far (in die pitches) a die centre may lie outside
    metadata_severity: Severity = Severity.WARNING  # datasets may pass INFO instead


@dataclass(frozen=True, slots=True)
class QualityReport:
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    score: float = 1.0

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return all(f.severity is not Severity.ERROR for f in self.findings)

    def by_code(self, code: FindingCode) -> Finding | None:
        return next((f for f in self.findings if f.code is code), None)

    def worst(self) -> Severity | None:
        order = [Severity.INFO, Severity.WARNING, Severity.ERROR]
        levels = [order.index(f.severity) for f in self.findings]
        return order[max(levels)] if levels else None


_PENALTY = {Severity.INFO: 0.0, Severity.WARNING: 0.1, Severity.ERROR: 0.5}


def _sample(x: npt.NDArray[np.int32], y: npt.NDArray[np.int32]) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in zip(x[:SAMPLE_DIES], y[:SAMPLE_DIES], strict=True))


def centre_is_plausible(wafer: WaferMap) -> bool:
    """True when a centre is declared and lies within the dies' extent (a 10 % margin)."""
    info = wafer.info
    ext = wafer.extent
    if info.center_x is None or info.center_y is None or ext is None:
        return False
    x0, y0, x1, y1 = ext
    mx, my = 0.1 * (x1 - x0 + 1), 0.1 * (y1 - y0 + 1)
    return bool(x0 - mx <= info.center_x <= x1 + mx and y0 - my <= info.center_y <= y1 + my)


def wafer_circle(wafer: WaferMap) -> tuple[float, float, float, float, bool]:
    """(centre x, centre y, radius in x dies, radius in y dies, geometry_declared).

    From the declared wafer size and die size when both are known; otherwise the ellipse
    inscribed in the dies' (robust) bounding box (then only gross outliers can be detected).
    The centre is the declared one when it lies among the dies, else the middle of the robust
    extent (some testers write a fixed or meaningless CENTER_X/Y).
    """
    if wafer.die_count == 0:
        raise ValueError("an empty wafer has no circle")
    # A robust extent (0.5 / 99.5 percentiles) so that a few stray dies do not move the centre.
    x0, x1 = (float(v) for v in np.percentile(wafer.dies.x, [0.5, 99.5]))
    y0, y1 = (float(v) for v in np.percentile(wafer.dies.y, [0.5, 99.5]))
    x0, x1, y0, y1 = round(x0), round(x1), round(y0), round(y1)
    info = wafer.info
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if centre_is_plausible(wafer):
        cx, cy = float(info.center_x), float(info.center_y)  # type: ignore[arg-type]
    if info.wafer_size_mm and info.die_width_um and info.die_height_um:
        radius_um = info.wafer_size_mm * 1000.0 / 2.0
        return cx, cy, radius_um / info.die_width_um, radius_um / info.die_height_um, True
    return cx, cy, (x1 - x0 + 1) / 2.0, (y1 - y0 + 1) / 2.0, False


def check(wafer: WaferMap, thresholds: QualityThresholds | None = None) -> QualityReport:
    """Run every check on one wafer and return the report."""
    th = thresholds or QualityThresholds()
    findings: list[Finding] = []
    n = wafer.die_count
    d = wafer.dies

    if wafer.partial:
        findings.append(
            Finding(
                FindingCode.PARTIAL_WAFER,
                Severity.ERROR,
                "the source ended before this wafer was complete; dies may be missing",
            )
        )
    if n == 0:
        findings.append(Finding(FindingCode.EMPTY_WAFER, Severity.ERROR, "the wafer has no dies"))
        findings.extend(_metadata_findings(wafer, th))
        return _report(findings, n)

    if n < th.min_dies:
        findings.append(
            Finding(
                FindingCode.TOO_FEW_DIES,
                Severity.WARNING,
                f"only {n} dies (fewer than {th.min_dies}): not a whole wafer?",
                count=n,
            )
        )

    # Duplicates: the same (x, y) more than once (retest policy "all", or a broken source).
    key = (d.x.astype(np.int64) << 32) | (d.y.astype(np.int64) & 0xFFFFFFFF)
    _, first_idx, counts = np.unique(key, return_index=True, return_counts=True)
    dup = counts > 1
    if dup.any():
        idx = first_idx[dup]
        findings.append(
            Finding(
                FindingCode.DUPLICATE_DIE,
                Severity.WARNING,
                f"{int(dup.sum())} die positions appear more than once "
                f"({int(counts[dup].sum() - dup.sum())} extra results)",
                count=int(dup.sum()),
                dies=_sample(d.x[idx], d.y[idx]),
            )
        )

    # Declared grid: the dies must fit in it. Sources number the grid from different origins
    # (0, 1, a prober address), so the check is on the span: dies further than the declared
    # number of columns/rows from the lowest coordinate do not fit.
    info = wafer.info
    if info.grid_columns is not None and info.grid_rows is not None:
        gx0 = 0 if int(d.x.min()) >= 0 and int(d.x.max()) < info.grid_columns else int(d.x.min())
        gy0 = 0 if int(d.y.min()) >= 0 and int(d.y.max()) < info.grid_rows else int(d.y.min())
        bad = (d.x >= gx0 + info.grid_columns) | (d.y >= gy0 + info.grid_rows)
        if bad.any():
            findings.append(
                Finding(
                    FindingCode.OUT_OF_GRID,
                    Severity.ERROR,
                    f"{int(bad.sum())} dies lie outside the declared "
                    f"{info.grid_columns} x {info.grid_rows} grid",
                    count=int(bad.sum()),
                    dies=_sample(d.x[bad], d.y[bad]),
                )
            )
    if (info.center_x is not None or info.center_y is not None) and not centre_is_plausible(wafer):
        findings.append(
            Finding(
                FindingCode.INCONSISTENT_GEOMETRY,
                Severity.INFO,
                f"declared wafer centre ({info.center_x}, {info.center_y}) lies outside the dies; "
                "the centre of the die extent is used instead",
            )
        )

    # Wafer circle.
    cx, cy, rx, ry, declared = wafer_circle(wafer)
    tol = th.edge_tolerance_dies if declared else th.edge_tolerance_dies + 0.5
    dx = np.abs(d.x - cx) - 0.5  # nearest point of the die cell to the centre
    dy = np.abs(d.y - cy) - 0.5
    dx = np.clip(dx, 0, None)
    dy = np.clip(dy, 0, None)
    outside = (dx / (rx + tol)) ** 2 + (dy / (ry + tol)) ** 2 > 1.0
    if outside.any():
        basis = "declared wafer and die size" if declared else "die extent (no geometry declared)"
        findings.append(
            Finding(
                FindingCode.OUTSIDE_WAFER,
                Severity.WARNING if declared else Severity.INFO,
                f"{int(outside.sum())} dies lie outside the wafer circle ({basis})",
                count=int(outside.sum()),
                dies=_sample(d.x[outside], d.y[outside]),
            )
        )

    passed = int(np.count_nonzero(d.passed))
    y = passed / n
    if n >= th.min_dies and y <= th.min_plausible_yield:
        findings.append(
            Finding(
                FindingCode.IMPLAUSIBLE_YIELD,
                Severity.WARNING,
                f"yield {y:.1%} over {n} dies: a wafer with no passing die is usually a "
                "test-setup problem (probe card, program), not a defect pattern",
                count=n - passed,
            )
        )

    if info.start_time and info.end_time and info.end_time < info.start_time:
        findings.append(
            Finding(
                FindingCode.TIME_ORDER,
                Severity.WARNING,
                f"end time {info.end_time.isoformat()} is before start time "
                f"{info.start_time.isoformat()}",
            )
        )

    findings.extend(_metadata_findings(wafer, th))
    return _report(findings, n)


def _metadata_findings(wafer: WaferMap, th: QualityThresholds) -> Iterable[Finding]:
    missing = [
        name
        for name, value in (("lot id", wafer.info.lot_id), ("wafer id", wafer.info.wafer_id))
        if not value
    ]
    if missing:
        yield Finding(
            FindingCode.MISSING_METADATA,
            th.metadata_severity,
            f"missing {' and '.join(missing)}",
            count=len(missing),
        )


def _report(findings: list[Finding], n: int) -> QualityReport:
    score = 1.0
    for f in findings:
        penalty = _PENALTY[f.severity]
        if penalty and n and f.count:
            penalty *= 0.5 + 0.5 * min(1.0, f.count / n)
        score *= 1.0 - penalty
    return QualityReport(findings=tuple(findings), score=round(score, 4))
