"""Augmentation that respects wafer physics, applied to the dense die grid before encoding.

Every transform works on the die grid (0 no die, 1 pass, 2 fail), never on the encoded picture,
and every result is a legal wafer: dies exist only where the original wafer had dies, so nothing
is ever drawn off the wafer or into the notch, and the die count is preserved.

* ``flip`` / ``rot90``: mirror and quarter turns, exact on the grid (the pattern classes do not
  depend on orientation).
* ``rotate``: a rotation by any angle up to ``rotate_max_deg`` of the *fail* dies about the grid
  centre (nearest die); the wafer outline stays, fails that land outside it are dropped.
* ``elastic``: a small smooth displacement field (``elastic_alpha`` dies, smoothed with a
  Gaussian of ``elastic_sigma`` dies) moves the fail dies.
* ``density``: scales the defect density by a factor in ``density_range``: below 1 each fail
  die passes with probability 1 - factor; above 1 pass dies touching a fail fail with a
  probability chosen so the fail count grows by about that factor.
* ``jitter``: a ``jitter_fraction`` of the fail dies move by one die (8-neighbourhood) where the
  target is a die.
* ``cluster``: cluster-size modulation — one step of morphological dilation (grow) or, when
  ``cluster_erode`` allows, erosion (shrink, only when most of the fails survive it).

Probabilities and strengths come from the config, per class (:class:`AugmentConfig`).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.wafermap import FAIL_DIE, NO_DIE, PASS_DIE
from waferscope.trainer.config import AugmentPolicy

Grid = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_BOX = np.ones((3, 3), np.uint8)


def _compose(wafer: Mask, fail: Mask) -> Grid:
    out = np.where(wafer, PASS_DIE, NO_DIE).astype(np.uint8)
    out[wafer & fail] = FAIL_DIE
    return out


def _warp_nearest(mask: Mask, matrix: npt.NDArray[np.float64]) -> Mask:
    rows, cols = mask.shape
    out = cv2.warpAffine(
        mask.astype(np.uint8),
        matrix,
        (cols, rows),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out.astype(bool)


def rotate_fails(wafer: Mask, fail: Mask, angle_deg: float) -> Mask:
    rows, cols = fail.shape
    centre = ((cols - 1) / 2.0, (rows - 1) / 2.0)
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, angle_deg, 1.0), dtype=np.float64)
    return _warp_nearest(fail, matrix) & wafer


def elastic_fails(
    wafer: Mask, fail: Mask, rng: np.random.Generator, alpha: float, sigma: float
) -> Mask:
    rows, cols = fail.shape
    field = rng.uniform(-1.0, 1.0, size=(2, rows, cols)).astype(np.float32)
    ksize = int(2 * round(3 * sigma) + 1)
    for k in range(2):
        field[k] = cv2.GaussianBlur(field[k], (ksize, ksize), sigma)
        peak = float(np.abs(field[k]).max()) or 1.0
        field[k] *= alpha / peak
    grid_y, grid_x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    out = cv2.remap(
        fail.astype(np.uint8),
        grid_x + field[0],
        grid_y + field[1],
        interpolation=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out.astype(bool) & wafer


def scale_density(wafer: Mask, fail: Mask, rng: np.random.Generator, factor: float) -> Mask:
    if factor < 1.0:
        return fail & (rng.random(fail.shape) < factor)
    n_fail = int(fail.sum())
    if factor == 1.0 or n_fail == 0:
        return fail
    border = cv2.dilate(fail.astype(np.uint8), _BOX).astype(bool) & wafer & ~fail
    n_border = int(border.sum())
    if n_border == 0:
        return fail
    p = min(1.0, (factor - 1.0) * n_fail / n_border)
    grown: Mask = fail | (border & (rng.random(fail.shape) < p))
    return grown


def jitter_fails(wafer: Mask, fail: Mask, rng: np.random.Generator, fraction: float) -> Mask:
    ys, xs = np.nonzero(fail)
    if ys.size == 0:
        return fail
    move = rng.random(ys.size) < fraction
    if not move.any():
        return fail
    rows, cols = fail.shape
    dy = rng.integers(-1, 2, size=int(move.sum()))
    dx = rng.integers(-1, 2, size=int(move.sum()))
    ty = np.clip(ys[move] + dy, 0, rows - 1)
    tx = np.clip(xs[move] + dx, 0, cols - 1)
    ok = wafer[ty, tx]
    out = fail.copy()
    out[ys[move][ok], xs[move][ok]] = False
    out[ty[ok], tx[ok]] = True
    return out


def modulate_clusters(wafer: Mask, fail: Mask, rng: np.random.Generator, allow_erode: bool) -> Mask:
    as_u8 = fail.astype(np.uint8)
    if allow_erode and rng.random() < 0.5:
        eroded = cv2.erode(as_u8, _CROSS).astype(bool)
        # Keep isolated background fails; shrink only the clusters, and only if they survive.
        isolated = fail & ~cv2.dilate(eroded.astype(np.uint8), _BOX).astype(bool)
        shrunk: Mask = eroded | (isolated & (rng.random(fail.shape) < 0.5))
        if shrunk.sum() >= 0.5 * fail.sum():
            return shrunk
        return fail
    dilated: Mask = cv2.dilate(as_u8, _CROSS).astype(bool) & wafer
    return dilated


def augment_grid(grid: Grid, policy: AugmentPolicy, rng: np.random.Generator) -> Grid:
    """One random augmentation of a dense 0/1/2 grid under ``policy``."""
    wafer = grid != NO_DIE
    fail = grid == FAIL_DIE
    if rng.random() < policy.flip:
        wafer, fail = wafer[:, ::-1], fail[:, ::-1]
    if rng.random() < policy.rot90:
        k = int(rng.integers(0, 4))
        wafer, fail = np.rot90(wafer, k), np.rot90(fail, k)
    wafer = np.ascontiguousarray(wafer)
    fail = np.ascontiguousarray(fail)
    if policy.rotate_max_deg > 0 and rng.random() < policy.rotate:
        angle = float(rng.uniform(-policy.rotate_max_deg, policy.rotate_max_deg))
        fail = rotate_fails(wafer, fail, angle)
    if policy.elastic_alpha > 0 and rng.random() < policy.elastic:
        fail = elastic_fails(wafer, fail, rng, policy.elastic_alpha, policy.elastic_sigma)
    if rng.random() < policy.density:
        low, high = policy.density_range
        fail = scale_density(wafer, fail, rng, float(rng.uniform(low, high)))
    if policy.jitter_fraction > 0 and rng.random() < policy.jitter:
        fail = jitter_fails(wafer, fail, rng, policy.jitter_fraction)
    if rng.random() < policy.cluster:
        fail = modulate_clusters(wafer, fail, rng, policy.cluster_erode)
    return _compose(wafer, fail)
