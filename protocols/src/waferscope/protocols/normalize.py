"""Bring any wafer into the one canonical orientation.

Canonical frame (what the encoding, the pictures and the model see):

* the notch / flat lies at the **bottom** (``Side.DOWN``),
* x grows to the **right**, y grows **downward** (row order of an image),
* the smallest x and y of the dies are 0.

Sources declare their frame in :class:`~waferscope.protocols.wafermap.Orientation` (STDF WCR
POS_X/POS_Y/WF_FLAT, TSK header, KLARF OrientationMarkLocation, E142 Orientation/AxisDirection).
Undeclared marks are left where they are (nothing to rotate by) and the wafer says so in a note.
In-die defect offsets (KLARF XREL/YREL) stay in the source frame; only die indexes move.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from waferscope.protocols.wafermap import DieTable, Orientation, Side, WaferInfo, WaferMap

CANONICAL = Orientation(mark=Side.DOWN, x_increases=Side.RIGHT, y_increases=Side.DOWN)

# Clockwise quarter turns (in a y-down picture) that bring a mark at this side to the bottom.
_QUARTER_TURNS = {Side.DOWN: 0, Side.LEFT: 3, Side.UP: 2, Side.RIGHT: 1}


def is_canonical(wafer: WaferMap) -> bool:
    o = wafer.orientation
    ext = wafer.extent
    return (
        o.mark in (Side.DOWN, None)
        and o.x_increases is Side.RIGHT
        and o.y_increases is Side.DOWN
        and (ext is None or (ext[0] == 0 and ext[1] == 0))
    )


def _turn(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64], turns: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    for _ in range(turns % 4):
        x, y = -y, x  # one clockwise quarter turn in a y-down frame
    return x, y


def normalize(wafer: WaferMap) -> WaferMap:
    """A copy of the wafer in the canonical frame (see module docstring)."""
    if is_canonical(wafer):
        return wafer
    o = wafer.orientation
    d = wafer.dies
    sx = -1 if o.x_increases is Side.LEFT else 1
    sy = -1 if o.y_increases is Side.UP else 1
    turns = _QUARTER_TURNS[o.mark] if o.mark is not None else 0

    def transform(
        x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        return _turn(x * sx, y * sy, turns)

    x, y = transform(d.x.astype(np.int64), d.y.astype(np.int64))
    x0 = int(x.min()) if x.size else 0
    y0 = int(y.min()) if y.size else 0
    dies = DieTable.build(
        x=x - x0,
        y=y - y0,
        passed=d.passed,
        hard_bin=d.hard_bin,
        soft_bin=d.soft_bin,
        site=d.site,
        head=d.head,
        defect_count=d.defect_count,
    )

    info = wafer.info
    changes: dict[str, object] = {}
    if info.center_x is not None and info.center_y is not None:
        cx, cy = transform(np.array([info.center_x]), np.array([info.center_y]))
        changes["center_x"] = int(cx[0]) - x0
        changes["center_y"] = int(cy[0]) - y0
    if turns % 2 == 1:
        changes.update(
            grid_columns=info.grid_rows,
            grid_rows=info.grid_columns,
            die_width_um=info.die_height_um,
            die_height_um=info.die_width_um,
        )
    new_info: WaferInfo = replace(info, **changes)  # type: ignore[arg-type]

    defects = wafer.defects
    if defects:
        dx, dy = transform(
            np.array([df.die_x for df in defects], dtype=np.int64),
            np.array([df.die_y for df in defects], dtype=np.int64),
        )
        defects = tuple(
            replace(df, die_x=int(a) - x0, die_y=int(b) - y0)
            for df, a, b in zip(defects, dx, dy, strict=True)
        )

    if o.mark is None:
        note = "normalised axes; orientation mark not declared, so not rotated"
        mark: Side | None = None
    else:
        note = f"normalised from mark {o.mark}, x {o.x_increases}, y {o.y_increases}"
        mark = Side.DOWN
    return wafer.with_(
        dies=dies,
        info=new_info,
        orientation=Orientation(
            mark=mark, mark_kind=o.mark_kind, x_increases=Side.RIGHT, y_increases=Side.DOWN
        ),
        defects=defects,
        notes=(*wafer.notes, note),
    )
