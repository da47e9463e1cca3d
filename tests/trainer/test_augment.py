"""Augmentation keeps every map a legal wafer: dies only where the wafer has dies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.trainer.augment import (
    augment_grid,
    elastic_fails,
    jitter_fails,
    modulate_clusters,
    rotate_fails,
    scale_density,
)
from waferscope.trainer.config import AugmentPolicy

NO_GEOMETRY = {"flip": 0.0, "rot90": 0.0}


@pytest.fixture(scope="module")
def maps(data_dir: Path) -> list[np.ndarray]:
    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    rng = np.random.default_rng(0)
    idx = [int(i) for i in np.flatnonzero(arrays.targets != 8)[::97][:40]]
    idx += [int(i) for i in rng.choice(np.flatnonzero(arrays.targets == 8), 10, replace=False)]
    return [arrays.maps[i] for i in idx]


def _masks(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return grid != 0, grid == 2


def test_every_transform_keeps_the_wafer_outline(maps: list[np.ndarray]) -> None:
    policy = AugmentPolicy(
        **NO_GEOMETRY, rotate=1, elastic=1, density=1, jitter=1, cluster=1, elastic_alpha=2.0
    )
    rng = np.random.default_rng(1)
    changed = 0
    for grid in maps:
        out = augment_grid(grid, policy, rng)
        assert out.shape == grid.shape and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 1, 2}
        np.testing.assert_array_equal(out != 0, grid != 0)  # same dies, same outline
        changed += int((out != grid).any())
    assert changed > len(maps) // 2


def test_flips_and_quarter_turns_are_exact(maps: list[np.ndarray]) -> None:
    policy = AugmentPolicy(flip=1.0, rot90=1.0, rotate=0, elastic=0, density=0, jitter=0, cluster=0)
    rng = np.random.default_rng(2)
    for grid in maps[:10]:
        out = augment_grid(grid, policy, rng)
        candidates = [np.rot90(grid[:, ::-1], k) for k in range(4)]
        assert any(c.shape == out.shape and (c == out).all() for c in candidates)
        assert (out == 2).sum() == (grid == 2).sum()


def test_same_seed_same_result(maps: list[np.ndarray]) -> None:
    policy = AugmentPolicy(rotate=1, elastic=1, density=1, jitter=1, cluster=1)
    a = [augment_grid(g, policy, np.random.default_rng([3, i])) for i, g in enumerate(maps)]
    b = [augment_grid(g, policy, np.random.default_rng([3, i])) for i, g in enumerate(maps)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


def test_individual_transforms(maps: list[np.ndarray]) -> None:
    rng = np.random.default_rng(4)
    grid = max(maps, key=lambda g: int((g == 2).sum()))
    wafer, fail = _masks(grid)
    n = int(fail.sum())
    assert not (rotate_fails(wafer, fail, 30.0) & ~wafer).any()
    assert not (elastic_fails(wafer, fail, rng, 2.0, 3.0) & ~wafer).any()
    fewer = scale_density(wafer, fail, rng, 0.5)
    assert not (fewer & ~fail).any() and fewer.sum() < n
    more = scale_density(wafer, fail, rng, 1.3)
    assert (more & fail).sum() == n and more.sum() > n and not (more & ~wafer).any()
    moved = jitter_fails(wafer, fail, rng, 0.5)
    assert not (moved & ~wafer).any()
    grown = modulate_clusters(wafer, fail, np.random.default_rng(5), allow_erode=False)
    assert grown.sum() >= n and not (grown & ~wafer).any()


def test_rotation_by_zero_is_identity(maps: list[np.ndarray]) -> None:
    wafer, fail = _masks(maps[0])
    np.testing.assert_array_equal(rotate_fails(wafer, fail, 0.0), fail)
