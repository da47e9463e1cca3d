"""Quality report: typed findings with severities for the things that make a wafer suspect."""

from __future__ import annotations

import numpy as np

from waferscope.protocols.quality import FindingCode, QualityThresholds, Severity, check
from waferscope.protocols.wafermap import DieTable, Provenance, WaferInfo, WaferMap

PROV = Provenance(source="t", format="test")


def disc_wafer(side: int = 21, **info: object) -> WaferMap:
    yy, xx = np.mgrid[:side, :side]
    c = (side - 1) / 2
    grid = (((yy - c) ** 2 + (xx - c) ** 2) <= (side / 2) ** 2).astype(np.uint8)
    return WaferMap.from_dense(
        grid,
        provenance=PROV,
        info=WaferInfo(lot_id="L", wafer_id="1", **info),  # type: ignore[arg-type]
    )


def test_clean_wafer_has_no_findings() -> None:
    r = check(disc_wafer())
    assert r.findings == () and r.score == 1.0 and r.ok


def test_empty_wafer_is_an_error() -> None:
    w = WaferMap(dies=DieTable.build(x=[], y=[], passed=[]), provenance=PROV)
    r = check(w)
    assert r.by_code(FindingCode.EMPTY_WAFER) is not None
    assert not r.ok and r.worst() is Severity.ERROR
    assert r.by_code(FindingCode.MISSING_METADATA) is not None


def test_duplicates_are_counted_with_examples() -> None:
    w = WaferMap(
        dies=DieTable.build(x=[0, 0, 1, 1, 1, 2], y=[0, 0, 0, 0, 0, 0], passed=[True] * 6),
        provenance=PROV,
        info=WaferInfo(lot_id="L", wafer_id="W"),
    )
    f = check(w, QualityThresholds(min_dies=1)).by_code(FindingCode.DUPLICATE_DIE)
    assert f is not None and f.count == 2 and set(f.dies) == {(0, 0), (1, 0)}
    assert "3 extra results" in f.message


def test_out_of_declared_grid() -> None:
    w = disc_wafer(grid_columns=10, grid_rows=30)
    f = check(w).by_code(FindingCode.OUT_OF_GRID)
    assert f is not None and f.severity is Severity.ERROR and all(x >= 10 for x, _ in f.dies)


def test_dies_outside_declared_wafer_circle() -> None:
    base = disc_wafer(side=21, wafer_size_mm=100.0, die_width_um=5000.0, die_height_um=5000.0)
    stray = WaferMap(
        dies=DieTable.build(
            x=np.append(base.dies.x, 40),
            y=np.append(base.dies.y, 40),
            passed=np.append(base.dies.passed, True),
        ),
        provenance=PROV,
        info=base.info,
    )
    assert check(base).by_code(FindingCode.OUTSIDE_WAFER) is None
    f = check(stray).by_code(FindingCode.OUTSIDE_WAFER)
    assert f is not None and f.dies == ((40, 40),) and f.severity is Severity.WARNING


def test_zero_yield_and_partial_and_time_order() -> None:
    from datetime import datetime

    w = disc_wafer(start_time=datetime(2024, 1, 2), end_time=datetime(2024, 1, 1))
    w = w.with_(
        dies=DieTable.build(x=w.dies.x, y=w.dies.y, passed=np.zeros(w.die_count, bool)),
        partial=True,
    )
    r = check(w)
    codes = {f.code for f in r.findings}
    assert {
        FindingCode.IMPLAUSIBLE_YIELD,
        FindingCode.PARTIAL_WAFER,
        FindingCode.TIME_ORDER,
    } <= codes
    assert 0 < r.score < 0.5


def test_dataset_maps_may_downgrade_missing_metadata() -> None:
    w = WaferMap.from_dense(np.ones((5, 5), np.uint8), provenance=PROV)
    th = QualityThresholds(min_dies=1, metadata_severity=Severity.INFO)
    r = check(w, th)
    assert r.by_code(FindingCode.MISSING_METADATA).severity is Severity.INFO  # type: ignore[union-attr]
    assert r.score == 1.0


def test_meaningless_declared_centre_is_ignored_and_reported() -> None:
    w = disc_wafer(center_x=128, center_y=128)  # dies span 0..20: the centre is nonsense
    r = check(w)
    f = r.by_code(FindingCode.INCONSISTENT_GEOMETRY)
    assert f is not None and "(128, 128)" in f.message
    assert r.by_code(FindingCode.OUTSIDE_WAFER) is None  # the extent centre was used


def test_grid_numbered_from_an_offset_origin_fits() -> None:
    w = WaferMap.from_dense(
        np.ones((5, 5), np.uint8),
        provenance=PROV,
        origin=(300, 100),
        info=WaferInfo(lot_id="L", wafer_id="W", grid_columns=6, grid_rows=6),
    )
    assert check(w, QualityThresholds(min_dies=1)).by_code(FindingCode.OUT_OF_GRID) is None
    narrow = w.with_(info=WaferInfo(lot_id="L", wafer_id="W", grid_columns=3, grid_rows=6))
    f = check(narrow, QualityThresholds(min_dies=1)).by_code(FindingCode.OUT_OF_GRID)
    assert f is not None and f.count == 10
