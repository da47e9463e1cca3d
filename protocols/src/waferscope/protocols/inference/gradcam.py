"""Grad-CAM from the engine's feature map and the classifier head — no autograd.

The engine ends in global average pooling: ``embedding = mean_{ij} A[k, i, j]``. For the class
score ``y_c = head(embedding)_c`` the Grad-CAM channel weight is

    alpha_k = (1 / hw) * sum_ij dy_c / dA[k, i, j] = (dy_c / d embedding_k) / hw,

and the map is ``ReLU(sum_k alpha_k A[k])``, bilinearly resized to the model-input grid and
scaled to 0..1. ``HeadWeights.pattern_gradient`` (protocols) gives ``dy_c / d embedding``.
``tests/protocols/inference/test_gradcam.py`` checks the result against torch autograd Grad-CAM.

Hot regions are read on the die grid: every die takes the relevance of the model-input pixel its
centre falls in (encoding v1 pads the map to a centred square and scales it uniformly), dies at
or above the threshold form 8-connected regions, and each region is reported as its dies and its
inclusive bounding box in die coordinates of the normalised map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.bundle import HeadWeights
from waferscope.protocols.inference.runner import F32, EngineOutputs
from waferscope.protocols.wafermap import FAIL_DIE, NO_DIE


def gradcam_maps(outputs: EngineOutputs, head: HeadWeights, classes: Sequence[int]) -> F32:
    """Raw (non-negative, unscaled) Grad-CAM maps at feature-map resolution: (N, h, w)."""
    features = outputs.feature_map
    _, _, h, w = features.shape
    weights = head.pattern_gradient(outputs.embedding, classes) / float(h * w)  # (N, K)
    cam = np.einsum("nk,nkhw->nhw", weights.astype(np.float32), features, optimize=True)
    out: F32 = np.maximum(cam, 0.0).astype(np.float32)
    return out


def upsample(cams: F32, size: int) -> F32:
    """Bilinear resize to (N, size, size) (half-pixel centres, as torch's align_corners=False)
    and scale each map to 0..1 (an all-zero map stays zero)."""
    out = np.empty((cams.shape[0], size, size), dtype=np.float32)
    for i, cam in enumerate(cams):
        big = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
        np.maximum(big, 0.0, out=big)
        top = float(big.max())
        out[i] = big / top if top > 0 else big
    return out


def gradcam(outputs: EngineOutputs, head: HeadWeights, classes: Sequence[int], size: int) -> F32:
    """Grad-CAM heatmaps on the model-input grid, 0..1: (N, size, size)."""
    return upsample(gradcam_maps(outputs, head, classes), size)


def to_uint8(heatmap: F32) -> npt.NDArray[np.uint8]:
    out: npt.NDArray[np.uint8] = np.clip(np.rint(heatmap * 255.0), 0, 255).astype(np.uint8)
    return out


def die_relevance(heatmap: npt.NDArray[np.generic], rows: int, cols: int) -> F32:
    """Relevance (0..1) of every cell of a rows x cols normalised dense map.

    ``heatmap`` is on the model-input grid (S x S, floats 0..1 or uint8 0..255).
    """
    raw = np.asarray(heatmap)
    heat = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
    size = heat.shape[0]
    side = max(rows, cols, 1)
    top, left = (side - rows) // 2, (side - cols) // 2
    r = np.minimum(((np.arange(rows) + top + 0.5) * size / side).astype(np.int64), size - 1)
    c = np.minimum(((np.arange(cols) + left + 0.5) * size / side).astype(np.int64), size - 1)
    return heat[np.ix_(r, c)].astype(np.float32)


@dataclass(frozen=True, slots=True)
class HotRegion:
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    score: float  # mean relevance of the dies inside the box
    fail_count: int  # failing dies inside the box
    dies: tuple[tuple[int, int], ...]  # (x, y) of the region's dies

    def to_dict(self) -> dict[str, object]:
        return {
            "box": [self.x_min, self.y_min, self.x_max, self.y_max],
            "score": round(self.score, 4),
            "fail_count": self.fail_count,
            "dies": [list(d) for d in self.dies],
        }


def hot_regions(
    relevance: F32,
    states: npt.NDArray[np.uint8],
    origin: tuple[int, int],
    *,
    threshold: float = 0.5,
    limit: int = 5,
) -> list[HotRegion]:
    """Connected groups of dies at or above ``threshold``, most relevant first.

    ``states`` is the normalised dense map (0/1/2, rows = y) placed at ``origin`` = (x, y) of
    row 0 / column 0; boxes and dies are in those die coordinates.
    """
    if limit <= 0 or states.size == 0:
        return []
    on_wafer = states != NO_DIE
    hot = ((relevance >= threshold) & on_wafer).astype(np.uint8)
    count, labels = cv2.connectedComponents(hot, connectivity=8)
    found: list[tuple[float, HotRegion]] = []
    for label in range(1, count):
        rr, cc = np.nonzero(labels == label)
        r0, r1, c0, c1 = int(rr.min()), int(rr.max()), int(cc.min()), int(cc.max())
        box_states = states[r0 : r1 + 1, c0 : c1 + 1]
        box_rel = relevance[r0 : r1 + 1, c0 : c1 + 1][box_states != NO_DIE]
        total = float(relevance[rr, cc].sum())
        region = HotRegion(
            x_min=c0 + origin[0],
            y_min=r0 + origin[1],
            x_max=c1 + origin[0],
            y_max=r1 + origin[1],
            score=float(box_rel.mean()) if box_rel.size else 0.0,
            fail_count=int(np.count_nonzero(box_states == FAIL_DIE)),
            dies=tuple(
                (int(c) + origin[0], int(r) + origin[1]) for r, c in zip(rr, cc, strict=True)
            ),
        )
        found.append((total, region))
    found.sort(key=lambda item: -item[0])
    return [region for _, region in found[:limit]]
