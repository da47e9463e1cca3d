"""Contact sheets: generated (or real) maps as one PNG grid, one row per class."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.render import BG, FAIL_UNKNOWN, PASS_COLOURS, TEXT, to_png

Grid = npt.NDArray[np.uint8]
LABEL_W = 110


def colourise(grid: Grid, cell: int) -> npt.NDArray[np.uint8]:
    """A BGR picture of one grid: no die blank, pass dies green, fail dies red."""
    palette = np.array([BG, PASS_COLOURS[0], FAIL_UNKNOWN], dtype=np.uint8)
    img = palette[np.clip(np.asarray(grid), 0, 2)]
    return np.asarray(np.repeat(np.repeat(img, cell, axis=0), cell, axis=1), dtype=np.uint8)


def contact_sheet(
    grids: Sequence[Grid],
    labels: npt.NDArray[np.int64],
    class_names: Sequence[str],
    *,
    per_row: int = 8,
    cell: int = 2,
    pad: int = 4,
) -> bytes:
    """PNG bytes: for each class present, a row of up to ``per_row`` of its maps."""
    present = [int(c) for c in np.unique(labels)]
    if not present:
        raise ValueError("no maps to draw")
    side = max(np.asarray(g).shape[0] for g in grids) * cell
    width = LABEL_W + per_row * (side + pad) + pad
    height = len(present) * (side + pad) + pad
    canvas = np.full((height, width, 3), 255, np.uint8)
    for row, cls in enumerate(present):
        y = pad + row * (side + pad)
        cv2.putText(
            canvas, class_names[cls], (6, y + side // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT, 1
        )
        for col, i in enumerate(np.flatnonzero(labels == cls)[:per_row]):
            img = colourise(grids[int(i)], cell)
            x = LABEL_W + pad + col * (side + pad)
            canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
            cv2.rectangle(canvas, (x - 1, y - 1), (x + side, y + side), (200, 200, 200), 1)
    return to_png(canvas)
