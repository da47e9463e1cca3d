"""Wafer-map pictures people want to look at: dies coloured by bin, outline, notch, legend.

The picture is drawn in the canonical orientation (notch at the bottom, x right, y down), so
maps from every format look alike. Passing dies are green (shades by bin), failing dies take a
colour per hard bin from a qualitative palette (red when the bin is unknown), "no die" cells are
left blank. The wafer outline comes from the declared wafer and die size when known, else from
the die extent.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from waferscope.protocols.normalize import normalize
from waferscope.protocols.quality import wafer_circle
from waferscope.protocols.wafermap import NO_DIE, PASS_DIE, Side, WaferMap

BG: Final = (255, 255, 255)
OUTLINE: Final = (90, 90, 90)
TEXT: Final = (30, 30, 30)
PASS_COLOURS: Final = ((60, 170, 60), (90, 200, 120), (40, 130, 40))  # BGR greens
FAIL_UNKNOWN: Final = (40, 40, 220)  # red (BGR)
FAIL_PALETTE: Final = (
    (40, 40, 220),  # red
    (0, 140, 255),  # orange
    (200, 60, 160),  # purple
    (180, 120, 30),  # blue
    (30, 200, 230),  # yellow
    (140, 70, 20),  # dark blue
    (130, 0, 130),  # magenta
    (60, 100, 160),  # brown
    (160, 160, 0),  # teal
    (100, 100, 100),  # grey
)
TITLE_H: Final = 44
LEGEND_W: Final = 190


def _colour_for(bin_no: int, passed: bool, pass_bins: list[int]) -> tuple[int, int, int]:
    if passed:
        idx = pass_bins.index(bin_no) if bin_no in pass_bins else 0
        return PASS_COLOURS[idx % len(PASS_COLOURS)]
    if bin_no < 0:
        return FAIL_UNKNOWN
    return FAIL_PALETTE[bin_no % len(FAIL_PALETTE)]


def render(
    wafer: WaferMap, *, max_px: int = 720, title: str | None = None
) -> npt.NDArray[np.uint8]:
    """The picture as a BGR uint8 array (OpenCV's layout)."""
    w = normalize(wafer)
    state = w.to_dense("state")
    bins = w.to_dense("hard_bin")
    rows, cols = state.shape if state.size else (1, 1)
    # The picture spans the dies and the wafer outline (which may reach beyond the dies).
    lo_x, lo_y, hi_x, hi_y = 0.0, 0.0, float(cols), float(rows)
    circle = None
    if state.size:
        x0, y0, _, _ = w.extent or (0, 0, 0, 0)
        cx, cy, rx, ry, _ = wafer_circle(w)
        circle = (cx - x0 + 0.5, cy - y0 + 0.5, rx + 0.6, ry + 0.6)  # in cells from the grid
        lo_x, hi_x = min(lo_x, circle[0] - circle[2]), max(hi_x, circle[0] + circle[2])
        lo_y, hi_y = min(lo_y, circle[1] - circle[3]), max(hi_y, circle[1] + circle[3])
    span = max(hi_x - lo_x, hi_y - lo_y, 1.0)
    cell = max(2, min(28, int(max_px // span)))
    pad = 12
    ox = pad + round(-lo_x * cell)
    oy = TITLE_H + pad + round(-lo_y * cell)
    map_w = round((hi_x - lo_x) * cell) + 2 * pad
    map_h = round((hi_y - lo_y) * cell) + 2 * pad
    canvas = np.full((map_h + TITLE_H, map_w + LEGEND_W, 3), BG, dtype=np.uint8)

    d = w.dies
    pass_bins = sorted({int(b) for b in np.unique(d.hard_bin[d.passed])}) if len(d) else []
    legend: dict[tuple[int, bool], int] = {}
    if state.size:
        small = np.zeros((rows, cols, 3), dtype=np.uint8)
        small[:] = BG
        occupied = state != NO_DIE
        keys = bins.astype(np.int64) * 2 + (state == PASS_DIE)
        for key in np.unique(keys[occupied]):
            b, passed = int(key) // 2, bool(int(key) % 2)
            sel = occupied & (keys == key)
            small[sel] = _colour_for(b, passed, pass_bins)
            legend[(b, passed)] = int(np.count_nonzero(sel))
        big = np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)
        if cell >= 6:  # a thin gap between dies when there is room
            big[cell - 1 :: cell, :, :] = np.maximum(big[cell - 1 :: cell, :, :], 235)
            big[:, cell - 1 :: cell, :] = np.maximum(big[:, cell - 1 :: cell, :], 235)
        canvas[oy : oy + rows * cell, ox : ox + cols * cell] = big
        assert circle is not None
        _draw_outline(canvas, w, circle, ox, oy, cell)

    _draw_title(canvas, w, title)
    inspection = bool(w.defects) or bool(np.any(d.defect_count > 0))
    _draw_legend(canvas, legend, pass_bins, x0=map_w + 8, y0=TITLE_H + 8, inspection=inspection)
    return canvas


def _draw_outline(
    canvas: npt.NDArray[np.uint8],
    w: WaferMap,
    circle: tuple[float, float, float, float],
    ox: int,
    oy: int,
    cell: int,
) -> None:
    cx, cy, rx, ry = circle
    centre = (int(ox + cx * cell), int(oy + cy * cell))
    axes = (max(1, int(rx * cell)), max(1, int(ry * cell)))
    cv2.ellipse(canvas, centre, axes, 0, 0, 360, OUTLINE, 2, cv2.LINE_AA)
    if w.orientation.mark is Side.DOWN:
        tip_y = centre[1] + axes[1]
        size = max(6, axes[0] // 14)
        pts = np.array(
            [[centre[0] - size, tip_y], [centre[0] + size, tip_y], [centre[0], tip_y - size]],
            dtype=np.int32,
        )
        cv2.fillPoly(canvas, [pts], OUTLINE, cv2.LINE_AA)


def _draw_title(canvas: npt.NDArray[np.uint8], w: WaferMap, title: str | None) -> None:
    info = w.info
    line1 = title or f"lot {info.lot_id or '?'}  wafer {info.wafer_id or '?'}"
    y = w.yield_fraction
    mark = w.orientation.mark
    notch = f"notch {mark}" if mark else "notch not declared"
    yield_text = "n/a" if y is None else f"{y:.1%}"
    line2 = (
        f"{w.die_count:,} dies  {w.fail_count:,} fail  yield {yield_text}"
        f"  ({w.provenance.format}, {notch})"
    )
    cv2.putText(canvas, line1, (10, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, TEXT, 1, cv2.LINE_AA)
    cv2.putText(canvas, line2, (10, 37), cv2.FONT_HERSHEY_SIMPLEX, 0.45, TEXT, 1, cv2.LINE_AA)


def _draw_legend(
    canvas: npt.NDArray[np.uint8],
    legend: dict[tuple[int, bool], int],
    pass_bins: list[int],
    x0: int,
    y0: int,
    inspection: bool = False,
) -> None:
    """Colour key; inspection maps (KLARF) say "defects" / "clean" rather than fail / pass."""
    items = sorted(legend.items(), key=lambda kv: -kv[1])
    max_items = max(1, (canvas.shape[0] - y0 - 10) // 18)
    for i, ((b, passed), count) in enumerate(items[:max_items]):
        y = y0 + i * 18
        colour = _colour_for(b, passed, pass_bins)
        cv2.rectangle(canvas, (x0, y), (x0 + 12, y + 12), colour, -1)
        if inspection and b < 0:
            label = f"{'clean die' if passed else 'die with defects'}: {count:,}"
        else:
            label = f"{'pass' if passed else 'fail'} bin {b if b >= 0 else '?'}: {count:,}"
        cv2.putText(
            canvas, label, (x0 + 18, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT, 1, cv2.LINE_AA
        )
    if len(items) > max_items:
        y = y0 + max_items * 18
        more = f"... {len(items) - max_items} more bins"
        cv2.putText(canvas, more, (x0, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT, 1)


def to_png(image: npt.NDArray[np.uint8]) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV only fails on impossible shapes
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())


def render_png(wafer: WaferMap, *, max_px: int = 720, title: str | None = None) -> bytes:
    return to_png(render(wafer, max_px=max_px, title=title))
