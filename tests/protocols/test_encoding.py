"""Model-input encoding v1: shape, channels, thin scratches kept, density kept, versioning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from waferscope.protocols.encoding import (
    V1,
    EncodingSpec,
    check_compatible,
    encode,
    encode_batch,
    encode_dense,
)
from waferscope.protocols.errors import EncodingError
from waferscope.protocols.wafermap import Orientation, Provenance, Side, WaferMap


def disc(side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    c = (side - 1) / 2
    return (((yy - c) ** 2 + (xx - c) ** 2) <= (side / 2) ** 2).astype(np.uint8)


def test_shape_dtype_range() -> None:
    out = encode_dense(disc(27))
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_one_die_wide_scratch_survives_downsampling() -> None:
    grid = disc(200)
    for i in range(40, 160):  # a diagonal scratch one die wide
        grid[i, i] = 2
    out = encode_dense(grid)
    fail_max = out[0]
    # every output row the scratch crosses has a fail pixel: the line is unbroken
    rows_hit = np.nonzero(fail_max.any(axis=1))[0]
    assert rows_hit.max() - rows_hit.min() + 1 == len(rows_hit) >= 35
    # while its mean density stays low: the two channels tell scratch from a dense blob
    assert out[1][fail_max > 0].mean() < 0.6


def test_fail_density_is_preserved_by_the_mean_channel() -> None:
    rng = np.random.default_rng(0)
    grid = disc(180)
    inside = grid == 1
    grid[inside & (rng.random(grid.shape) < 0.3)] = 2
    out = encode_dense(grid)
    density = out[1].sum() / out[2].sum()
    assert density == pytest.approx(0.3, abs=0.02)
    assert out[0].sum() / out[2].sum() > 0.6  # fail_max alone would overstate it


def test_small_maps_upsample_by_nearest_cell() -> None:
    grid = np.zeros((4, 4), dtype=np.uint8)
    grid[1, 2] = 2
    grid[grid == 0] = 1
    out = encode_dense(grid, EncodingSpec(size=16))
    expected = np.zeros((16, 16))
    expected[4:8, 8:12] = 1
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[0], out[1])
    assert out[2].min() == 1.0


def test_non_square_maps_are_centred() -> None:
    grid = np.ones((10, 30), dtype=np.uint8)
    out = encode_dense(grid, EncodingSpec(size=30))
    assert out[2][:10].sum() == 0 and out[2][20:].sum() == 0 and out[2][10:20].min() == 1


def test_encode_normalises_orientation_first() -> None:
    grid = np.ones((5, 5), dtype=np.uint8)
    grid[0, 2] = 2  # fail at the top of the source picture
    w = WaferMap.from_dense(
        grid, provenance=Provenance("t", "t"), orientation=Orientation(mark=Side.UP)
    )
    out = encode(w, EncodingSpec(size=20))
    assert out[0][16:].sum() > 0 and out[0][:4].sum() == 0  # after the turn it is at the bottom


def test_batch_equals_single() -> None:
    grids = [disc(20), disc(33), disc(70)]
    batch = encode_batch(grids)
    assert batch.shape == (3, 3, 64, 64)
    for g, b in zip(grids, batch, strict=True):
        np.testing.assert_array_equal(encode_dense(g), b)
    assert encode_batch([]).shape == (0, 3, 64, 64)


def test_versioning_refuses_mismatches() -> None:
    check_compatible(V1, V1.to_dict())
    with pytest.raises(EncodingError, match="version"):
        EncodingSpec(version=2)
    with pytest.raises(EncodingError, match="size"):
        EncodingSpec(size=4)
    with pytest.raises(EncodingError, match="96px"):
        check_compatible(V1, {**V1.to_dict(), "size": 96})
    with pytest.raises(EncodingError, match="channels"):
        check_compatible(V1, {**V1.to_dict(), "channels": ["fail", "pass", "wafer"]})
    with pytest.raises(EncodingError, match="malformed"):
        check_compatible(V1, {"size": 64})


@settings(max_examples=40, deadline=None)
@given(
    grid=hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=150), elements=st.integers(0, 2)
    ),
)
def test_property_channels_are_consistent(grid: np.ndarray) -> None:
    out = encode_dense(grid)
    assert np.all(out[1] <= out[0] + 1e-6)  # mean fail never exceeds "any fail"
    assert np.all(out[1] <= out[2] + 1e-6)  # fails are dies
    assert (out[0].sum() > 0) == bool((grid == 2).any())
