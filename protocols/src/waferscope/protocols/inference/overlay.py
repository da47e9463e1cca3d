"""Pictures for people: the die map alone, and the die map under its Grad-CAM heatmap.

Both are drawn on the normalised die grid (notch down, x right, y down), one square per die:
pass dies light green, fail dies dark red, no die blank. The overlay tints every die by its
relevance (colour map 'jet', stronger where more relevant) and outlines the hot regions. The
overlay is drawn from a fresh :class:`~waferscope.protocols.inference.pipeline.Classification`
or from a stored ``WaferResult`` message alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.inference.gradcam import HotRegion, die_relevance
from waferscope.protocols.inference.pipeline import Classification
from waferscope.protocols.messages import unpack_states
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.render import to_png
from waferscope.protocols.wafermap import FAIL_DIE, PASS_DIE

BACKGROUND = (255, 255, 255)
PASS_BGR = (150, 215, 160)
FAIL_BGR = (40, 40, 170)
REGION_BGR = (0, 230, 255)
TEXT_BGR = (30, 30, 30)


def _cell(rows: int, cols: int, max_px: int) -> int:
    return max(2, min(24, max_px // max(rows, cols, 1)))


def _dies(states: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    img = np.empty((*states.shape, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    img[states == PASS_DIE] = PASS_BGR
    img[states == FAIL_DIE] = FAIL_BGR
    return img


def _scale(small: npt.NDArray[np.uint8], cell: int) -> npt.NDArray[np.uint8]:
    big = np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)
    if cell >= 6:
        big[cell - 1 :: cell, :, :] = np.maximum(big[cell - 1 :: cell, :, :], 235)
        big[:, cell - 1 :: cell, :] = np.maximum(big[:, cell - 1 :: cell, :], 235)
    return big


def _frame(body: npt.NDArray[np.uint8], title: str | None) -> npt.NDArray[np.uint8]:
    pad, head = 10, (30 if title else 0)
    h, w = body.shape[:2]
    canvas = np.full((h + 2 * pad + head, max(w + 2 * pad, 240), 3), BACKGROUND, dtype=np.uint8)
    canvas[pad + head : pad + head + h, pad : pad + w] = body
    if title:
        cv2.putText(
            canvas, title, (pad, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, TEXT_BGR, 1, cv2.LINE_AA
        )
    return canvas


def map_png(states: npt.NDArray[np.uint8], *, max_px: int = 480, title: str | None = None) -> bytes:
    """The die map as PNG bytes."""
    rows, cols = states.shape
    return to_png(_frame(_scale(_dies(states), _cell(rows, cols, max_px)), title))


def overlay_image(
    states: npt.NDArray[np.uint8],
    relevance: npt.NDArray[np.float32],
    regions: Sequence[HotRegion] = (),
    origin: tuple[int, int] = (0, 0),
    *,
    max_px: int = 640,
) -> npt.NDArray[np.uint8]:
    """BGR picture of the map tinted by per-die relevance (0..1), hot regions outlined."""
    rows, cols = states.shape
    base = _dies(states).astype(np.float32)
    heat = cv2.applyColorMap(
        np.clip(relevance * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET
    ).astype(np.float32)
    alpha = (0.15 + 0.7 * np.sqrt(np.clip(relevance, 0.0, 1.0)))[..., None]
    on_wafer = (states != 0)[..., None]
    mixed = np.where(on_wafer, base * (1 - alpha) + heat * alpha, base)
    # keep fail dies recognisable under the tint: a dark core
    cell = _cell(rows, cols, max_px)
    big = _scale(np.clip(mixed, 0, 255).astype(np.uint8), cell)
    if cell >= 6:
        rr, cc = np.nonzero(states == FAIL_DIE)
        q = max(2, cell // 3)
        for r, c in zip(rr, cc, strict=True):
            y, x = r * cell + cell // 2, c * cell + cell // 2
            big[y - q // 2 : y + q // 2 + 1, x - q // 2 : x + q // 2 + 1] = (20, 20, 20)
    for region in regions:
        x0 = (region.x_min - origin[0]) * cell
        y0 = (region.y_min - origin[1]) * cell
        x1 = (region.x_max - origin[0] + 1) * cell - 1
        y1 = (region.y_max - origin[1] + 1) * cell - 1
        cv2.rectangle(big, (x0, y0), (x1, y1), REGION_BGR, 2)
    return big


def overlay_png(
    states: npt.NDArray[np.uint8],
    relevance: npt.NDArray[np.float32],
    regions: Sequence[HotRegion] = (),
    origin: tuple[int, int] = (0, 0),
    *,
    max_px: int = 640,
    title: str | None = None,
) -> bytes:
    """The overlay (wafer map + Grad-CAM heatmap + hot-region boxes) as PNG bytes."""
    return to_png(_frame(overlay_image(states, relevance, regions, origin, max_px=max_px), title))


def classification_overlay_png(
    item: Classification, *, max_px: int = 640, title: str | None = None
) -> bytes:
    """The overlay of a fresh classification (titled '<pattern> <confidence>' by default)."""
    return overlay_png(
        item.prepared.states,
        item.relevance(),
        item.regions,
        item.prepared.origin,
        max_px=max_px,
        title=f"{item.pattern.name} {item.confidence:.0%}" if title is None else title,
    )


def result_map_png(result: result_pb2.WaferResult, *, max_px: int = 240) -> bytes:
    """The die map of a ``WaferResult`` message."""
    return map_png(unpack_states(result.map), max_px=max_px)


def result_overlay_png(result: result_pb2.WaferResult, *, max_px: int = 640) -> bytes:
    """The overlay of a ``WaferResult`` message (no tint when it carries no heatmap)."""
    states = unpack_states(result.map)
    origin = (result.map.origin_x, result.map.origin_y)
    regions = [
        HotRegion(r.x_min, r.y_min, r.x_max, r.y_max, r.score, r.fail_count, ())
        for r in result.hot_regions
    ]
    hm = result.heatmap
    if hm.rows and hm.cols and len(hm.data) == hm.rows * hm.cols:
        heat = np.frombuffer(hm.data, dtype=np.uint8).reshape(hm.rows, hm.cols)
        relevance = die_relevance(heat, *states.shape)
    else:
        relevance = np.zeros(states.shape, dtype=np.float32)
    title = f"{result.pattern.name} {result.confidence:.0%}"
    return overlay_png(states, relevance, regions, origin, max_px=max_px, title=title)
