"""WaferMap: validated on construction, immutable, round-trips to dense arrays and JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from waferscope.protocols.errors import WaferMapError
from waferscope.protocols.wafermap import (
    Defect,
    DieTable,
    MarkKind,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

PROV = Provenance(source="t.csv", format="csv")


def make(grid: np.ndarray, **kw: object) -> WaferMap:
    return WaferMap.from_dense(grid, provenance=PROV, **kw)  # type: ignore[arg-type]


def test_summary_figures() -> None:
    grid = np.array([[0, 1, 1], [2, 1, 0]], dtype=np.uint8)
    w = make(grid)
    assert (w.die_count, w.fail_count, w.pass_count) == (4, 1, 3)
    assert w.yield_fraction == pytest.approx(0.75)
    assert w.extent == (0, 0, 2, 1)


def test_columns_are_read_only() -> None:
    w = make(np.array([[1, 2]], dtype=np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        w.dies.x[0] = 5
    with pytest.raises(AttributeError):
        w.partial = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": [1, 2], "y": [1], "passed": [True, True]}, "expected 2"),
        ({"x": [[1]], "y": [1], "passed": [True]}, "one-dimensional"),
        ({"x": [1], "y": [1], "passed": [True], "hard_bin": [-5]}, "negative"),
        ({"x": [1], "y": [1], "passed": [True], "defect_count": [-1]}, "negative"),
        ({"x": ["a"], "y": [1], "passed": [True]}, "die column 'x'"),
    ],
)
def test_die_table_rejects_inconsistent_columns(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(WaferMapError, match=match):
        DieTable.build(**kwargs)  # type: ignore[arg-type]


def test_info_and_orientation_validate() -> None:
    with pytest.raises(WaferMapError, match="wafer_size_mm"):
        WaferInfo(wafer_size_mm=-200)
    with pytest.raises(WaferMapError, match="x_increases"):
        Orientation(x_increases=Side.UP)
    with pytest.raises(WaferMapError, match="0 \\(no die\\)"):
        make(np.array([[3]]))


def test_dense_round_trip_with_origin_and_bins() -> None:
    grid = np.array([[0, 1, 2], [1, 1, 0], [0, 2, 0]], dtype=np.uint8)
    bins = np.where(grid == 2, 7, 1)
    w = make(grid, origin=(-5, 10), hard_bins=bins)
    assert w.extent == (-5, 10, -3, 12)
    np.testing.assert_array_equal(w.to_dense(), grid)
    hb = w.to_dense("hard_bin")
    assert hb[0, 2] == 7 and hb[1, 0] == 1 and hb[0, 0] == -1


def test_json_round_trip_keeps_everything() -> None:
    w = WaferMap(
        dies=DieTable.build(
            x=[0, 1, 2],
            y=[0, 0, 1],
            passed=[True, False, True],
            hard_bin=[1, 9, 1],
            soft_bin=[1, 90, 1],
            site=[0, 1, 0],
            head=[1, 1, 1],
            defect_count=[0, 3, 0],
        ),
        provenance=Provenance(source="a.stdf", format="stdf", wafer_index=2, offset=1234),
        info=WaferInfo(
            lot_id="L1",
            wafer_id="W7",
            tester_id="T",
            program="P",
            start_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            wafer_size_mm=200.0,
            die_width_um=2500.0,
            die_height_um=2200.0,
            extra={"probe_card": "PC-9"},
        ),
        orientation=Orientation(mark=Side.LEFT, mark_kind=MarkKind.NOTCH, x_increases=Side.LEFT),
        labels=("Scratch",),
        partial=True,
        notes=("cut at byte 99",),
        defects=(Defect(defect_id=1, die_x=1, die_y=0, x_um=10.5, y_um=3.0, size_um=0.4),),
    )
    back = WaferMap.from_json(w.to_json())
    assert back == w
    assert back.info.extra["probe_card"] == "PC-9"


@pytest.mark.parametrize(
    "text", ["", "[]", '{"schema": 99}', '{"schema": 1}', '{"schema": 1, "info": 5}']
)
def test_bad_json_is_a_typed_error(text: str) -> None:
    with pytest.raises(WaferMapError):
        WaferMap.from_json(text)


grids = hnp.arrays(
    dtype=np.uint8,
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.integers(0, 2),
)


@settings(max_examples=60, deadline=None)
@given(grid=grids, ox=st.integers(-1000, 1000), oy=st.integers(-1000, 1000))
def test_property_dense_and_json_round_trip(grid: np.ndarray, ox: int, oy: int) -> None:
    w = make(grid, origin=(ox, oy))
    assert WaferMap.from_json(w.to_json()) == w
    if w.die_count:
        x0, y0, _, _ = w.extent  # type: ignore[misc]
        again = make(w.to_dense(), origin=(x0, y0))
        assert again.dies == w.dies
