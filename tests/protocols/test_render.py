"""Wafer pictures: a real PNG, notch drawn at the bottom, colours by bin."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from waferscope.protocols.render import FAIL_PALETTE, PASS_COLOURS, render, render_png
from waferscope.protocols.wafermap import Orientation, Provenance, Side, WaferInfo, WaferMap


def test_picture_has_dies_outline_and_notch(artifacts_dir: Path) -> None:
    side = 31
    yy, xx = np.mgrid[:side, :side]
    grid = (((yy - 15) ** 2 + (xx - 15) ** 2) <= 15.5**2).astype(np.uint8)
    grid[5:8, 5:25] = np.where(grid[5:8, 5:25] > 0, 2, 0)
    bins = np.where(grid == 2, 7, 1)
    w = WaferMap.from_dense(
        grid,
        provenance=Provenance("t", "test"),
        hard_bins=bins,
        info=WaferInfo(lot_id="LOT", wafer_id="3"),
        orientation=Orientation(mark=Side.UP),  # drawn turned: notch at the bottom
    )
    png = render_png(w)
    (artifacts_dir / "render-test.png").write_bytes(png)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[0] > 300 and img.shape[1] > 300
    colours = {tuple(int(v) for v in px) for px in img.reshape(-1, 3)[::7]}
    assert PASS_COLOURS[0] in colours and FAIL_PALETTE[7] in colours

    raw = render(w)
    fail_rows = np.nonzero((raw == FAIL_PALETTE[7]).all(axis=2).any(axis=1))[0]
    # the failing band was at the top of a mark-UP source: after the turn it is in the lower half
    assert fail_rows.mean() > raw.shape[0] / 2
