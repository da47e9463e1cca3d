"""Normalisation: any declared frame ends in the canonical one (mark down, x right, y down)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from waferscope.protocols.normalize import is_canonical, normalize
from waferscope.protocols.wafermap import Orientation, Provenance, Side, WaferInfo, WaferMap

PROV = Provenance(source="t", format="test")


def picture_to_source(canonical: np.ndarray, o: Orientation) -> np.ndarray:
    """Inverse of normalisation, done independently with numpy image operations.

    Take the canonical picture (mark at the bottom), rotate it so the mark sits where ``o``
    says, then express it in the source's axes (flip when x grows left / y grows up).
    """
    turns_ccw = {Side.DOWN: 0, Side.RIGHT: 1, Side.UP: 2, Side.LEFT: 3}[o.mark or Side.DOWN]
    pic = np.rot90(canonical, k=turns_ccw)  # counter-clockwise: moves the bottom mark
    if o.x_increases is Side.LEFT:
        pic = pic[:, ::-1]
    if o.y_increases is Side.UP:
        pic = pic[::-1, :]
    return pic


@pytest.mark.parametrize("mark", list(Side))
@pytest.mark.parametrize("xdir", [Side.RIGHT, Side.LEFT])
@pytest.mark.parametrize("ydir", [Side.DOWN, Side.UP])
def test_every_declared_frame_normalises_to_the_same_picture(
    mark: Side, xdir: Side, ydir: Side
) -> None:
    canonical = np.array(
        [[0, 1, 1, 0], [1, 2, 1, 1], [1, 1, 1, 2], [0, 2, 1, 0], [0, 0, 1, 0]], dtype=np.uint8
    )
    o = Orientation(mark=mark, x_increases=xdir, y_increases=ydir)
    src = WaferMap.from_dense(
        picture_to_source(canonical, o), provenance=PROV, orientation=o, origin=(7, -3)
    )
    out = normalize(src)
    np.testing.assert_array_equal(out.to_dense(), canonical)
    assert out.orientation.mark is Side.DOWN
    assert is_canonical(out)
    assert out.extent is not None and out.extent[:2] == (0, 0)


def test_centre_and_grid_follow_the_rotation() -> None:
    grid = np.ones((3, 5), dtype=np.uint8)
    o = Orientation(mark=Side.RIGHT)
    w = WaferMap.from_dense(
        grid,
        provenance=PROV,
        orientation=o,
        info=WaferInfo(
            center_x=4,
            center_y=0,
            grid_columns=5,
            grid_rows=3,
            die_width_um=100.0,
            die_height_um=50.0,
        ),
    )
    n = normalize(w)
    assert n.to_dense().shape == (5, 3)
    assert (n.info.grid_columns, n.info.grid_rows) == (3, 5)
    assert (n.info.die_width_um, n.info.die_height_um) == (50.0, 100.0)
    # die (4, 0) is the centre; after the turn it must still be a die position
    assert n.to_dense()[n.info.center_y, n.info.center_x] == 1  # type: ignore[index]


def test_undeclared_mark_is_not_rotated_but_says_so() -> None:
    w = WaferMap.from_dense(
        np.array([[1, 2]]), provenance=PROV, orientation=Orientation(x_increases=Side.LEFT)
    )
    n = normalize(w)
    np.testing.assert_array_equal(n.to_dense(), [[2, 1]])
    assert n.orientation.mark is None
    assert any("not rotated" in note for note in n.notes)


def test_canonical_input_is_returned_as_is() -> None:
    w = WaferMap.from_dense(np.array([[1, 2]]), provenance=PROV)
    assert normalize(w) is w


@settings(max_examples=50, deadline=None)
@given(
    grid=hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.integers(0, 2)
    ),
    mark=st.sampled_from(list(Side)),
    xdir=st.sampled_from([Side.LEFT, Side.RIGHT]),
    ydir=st.sampled_from([Side.UP, Side.DOWN]),
)
def test_property_normalise_is_idempotent_and_keeps_counts(
    grid: np.ndarray, mark: Side, xdir: Side, ydir: Side
) -> None:
    w = WaferMap.from_dense(
        grid,
        provenance=PROV,
        orientation=Orientation(mark=mark, x_increases=xdir, y_increases=ydir),
    )
    n = normalize(w)
    assert normalize(n).dies == n.dies
    assert (n.die_count, n.fail_count) == (w.die_count, w.fail_count)
