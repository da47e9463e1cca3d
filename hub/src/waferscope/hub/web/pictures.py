"""Pictures for the reviewer UI: the wafer map, the Grad-CAM overlay and the SHAP region map.

The map picture is protocols' ``render_png`` (outline, notch, legend). The overlay maps the
heatmap, which lives on the encoding's square model-input grid, back onto the die grid the way
encoding v1 placed the map (centred in a square of side max(rows, cols)), and blends it over the
dies. Pictures are cached by blob key (they never change for a key).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.messages import unpack_states
from waferscope.protocols.pb.result_pb2 import CompactWaferMap
from waferscope.protocols.render import render_png, to_png
from waferscope.protocols.wafermap import FAIL_DIE, NO_DIE, Provenance, WaferMap


class PictureCache:
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        data = make()
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data


def wafer_of(compact: CompactWaferMap, *, name: str = "hub") -> WaferMap:
    grid = unpack_states(compact)
    return WaferMap.from_dense(
        grid,
        provenance=Provenance(source=name, format="compact"),
        origin=(compact.origin_x, compact.origin_y),
    )


def map_png(compact: CompactWaferMap, *, title: str | None = None, max_px: int = 520) -> bytes:
    """protocols' picture; the title line names the grid (lot and wafer are on the page)."""
    title = title or f"{compact.rows} x {compact.cols} die grid"
    return render_png(wafer_of(compact), max_px=max_px, title=title)


def _cell(rows: int, cols: int, max_px: int) -> int:
    return max(2, min(24, max_px // max(rows, cols, 1)))


def heat_on_dies(
    heat: npt.NDArray[np.uint8], grid_shape: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Relevance 0..1 per die cell, undoing encoding v1's centring into a square."""
    rows, cols = grid_shape
    side = max(rows, cols)
    square = cv2.resize(
        heat.astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_LINEAR
    )
    top, left = (side - rows) // 2, (side - cols) // 2
    return np.asarray(square[top : top + rows, left : left + cols], dtype=np.float32)


def _dies_image(grid: npt.NDArray[np.uint8], cell: int) -> npt.NDArray[np.uint8]:
    colours = np.array([[255, 255, 255], [120, 190, 120], [50, 50, 210]], dtype=np.uint8)  # BGR
    image = colours[np.minimum(grid, FAIL_DIE)]
    return np.repeat(np.repeat(image, cell, axis=0), cell, axis=1)


def overlay_png(
    compact: CompactWaferMap, heat: npt.NDArray[np.uint8], *, max_px: int = 520
) -> bytes:
    """Grad-CAM relevance blended over the die map (jet colours; white where there is no die)."""
    grid = unpack_states(compact)
    rows, cols = grid.shape
    cell = _cell(rows, cols, max_px)
    dies = _dies_image(grid, cell)
    relevance = heat_on_dies(heat, (rows, cols))
    rel_px = np.repeat(np.repeat(relevance, cell, axis=0), cell, axis=1)
    coloured = cv2.applyColorMap((rel_px * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (0.25 + 0.6 * rel_px)[..., None]
    blended = (dies * (1 - alpha) + coloured * alpha).astype(np.uint8)
    mask = np.repeat(np.repeat(grid == NO_DIE, cell, axis=0), cell, axis=1)
    blended[mask] = 255
    return to_png(blended)


def region_png(
    compact: CompactWaferMap, values: npt.NDArray[np.float64], *, max_px: int = 520
) -> bytes:
    """SHAP values of grid × grid regions over the die map: red pushes towards the predicted
    pattern, blue away from it."""
    grid = unpack_states(compact)
    rows, cols = grid.shape
    cell = _cell(rows, cols, max_px)
    dies = _dies_image(grid, cell).astype(np.float32)
    g = values.shape[0]
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    scale = float(np.max(np.abs(values))) or 1.0
    square = cv2.resize(
        (values / scale).astype(np.float32), (side, side), interpolation=cv2.INTER_NEAREST
    )[top : top + rows, left : left + cols]
    v = np.repeat(np.repeat(square, cell, axis=0), cell, axis=1)[..., None]
    red = np.array([40, 40, 230], dtype=np.float32)
    blue = np.array([230, 120, 30], dtype=np.float32)
    tint = np.where(v > 0, red, blue)
    alpha = np.clip(np.abs(v), 0, 1) * 0.7
    out = dies * (1 - alpha) + tint * alpha
    step_r, step_c = side / g, side / g
    for k in range(1, g):  # region borders
        y = int(k * step_r - top) * cell
        x = int(k * step_c - left) * cell
        if 0 < y < out.shape[0]:
            out[y, :, :] = 90
        if 0 < x < out.shape[1]:
            out[:, x, :] = 90
    out[np.repeat(np.repeat(grid == NO_DIE, cell, axis=0), cell, axis=1)] = 255
    return to_png(out.astype(np.uint8))
