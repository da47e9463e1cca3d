"""Writer for TSK / Accretech prober maps (the layout is described in :mod:`.reader` and
:mod:`._header`).

One wafer per file. The map data area is the declared grid when the map carries it (grid size
plus first-die coordinate, as the TSK reader stores them) and covers every die, else the
bounding box of the dies. Cells without a die are written as skip dies, tested dies as probing
dies with result 1 (pass) or 2 (fail 1), category ``hard_bin - 1`` (0 when unknown) and the
test site (0 when unknown).

The smallest map version that holds the categories and sites is chosen: version 2 with the
extension header (categories and sites up to 64), version 2 with 4-byte extended results
(up to 256), version 4 (categories up to 1024, sites up to 512) or version 7 (categories up to
16384, sites up to 8192). Coordinates with a magnitude above 511 do not fit the 9-bit die
record fields; the header's first-die coordinate still carries them and the reader falls back
to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.tsk._header import (
    CONFIG_DIE_RESULTS,
    CONFIG_EXTENDED_DIE_RESULTS,
    CONFIG_EXTENSION_HEADER,
    CONFIG_HEADER,
    EXTENSION_DTYPE,
    HEADER_DTYPE,
    HEADER_SIZE,
    X_LEFTWARD,
    X_RIGHTWARD,
    Y_BACKWARD,
    Y_FORWARD,
    encode_text,
    encode_time,
    wafer_size_code,
    wafer_size_mm,
)
from waferscope.protocols.wafermap import Side, WaferMap

FORMAT_NAME: Final = "tsk"
_MAX_SIDE: Final = 4096
_ANGLE_BY_SIDE: Final = {Side.UP: 0, Side.RIGHT: 90, Side.DOWN: 180, Side.LEFT: 270}
# (map version, extended results written?, sites below, categories below)
_VERSIONS: Final = (
    (2, False, 64, 64),
    (2, True, 256, 256),
    (4, True, 512, 1024),
    (7, True, 8192, 16384),
)

IntArray = npt.NDArray[np.int64]


def _int_extra(extra: Mapping[str, str], key: str, default: int, limit: int) -> int:
    try:
        value = int(extra.get(key, default))
    except ValueError:
        return default
    return value if 0 <= value <= limit else default


def _time_extra(extra: Mapping[str, str], key: str) -> datetime | None:
    try:
        return datetime.fromisoformat(extra[key])
    except (KeyError, ValueError):
        return None


def _declared_grid(m: WaferMap) -> tuple[int, int, int, int] | None:
    """The grid a TSK reader recorded: first-die coordinate (info.extra) and grid size."""
    info, extra = m.info, m.info.extra
    if not (info.grid_columns and info.grid_rows):
        return None
    try:
        return (
            int(extra["first_die_x"]),
            int(extra["first_die_y"]),
            info.grid_columns,
            info.grid_rows,
        )
    except (KeyError, ValueError):
        return None


def _grid(m: WaferMap, step_x: int, step_y: int) -> tuple[int, int, int, int]:
    """(first_die_x, first_die_y, columns, rows) of the map data area."""
    x, y = m.dies.x.astype(np.int64), m.dies.y.astype(np.int64)
    declared = _declared_grid(m)
    if declared is not None:
        fx, fy, cols, rows = declared
        col, row = (x - fx) * step_x, (y - fy) * step_y
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        if bool(inside.all()):
            return declared
    if not x.size:
        return 0, 0, 1, 1
    fx = int(x.min()) if step_x > 0 else int(x.max())
    fy = int(y.min()) if step_y > 0 else int(y.max())
    return fx, fy, int(x.max() - x.min()) + 1, int(y.max() - y.min()) + 1


def _signed_field(values: IntArray, sign_bit: int) -> tuple[IntArray, IntArray]:
    """9-bit magnitude and the sign flag (1 = negative) placed at ``sign_bit``."""
    return np.abs(values) & 0x1FF, (values < 0).astype(np.int64) << sign_bit


def _choose_version(top_site: int, top_category: int) -> tuple[int, bool, int, int]:
    for choice in _VERSIONS:
        _, _, site_limit, category_limit = choice
        if top_site < site_limit and top_category < category_limit:
            return choice
    raise FormatError(
        f"categories up to {top_category + 1} / sites up to {top_site} exceed what TSK maps hold",
        format=FORMAT_NAME,
    )


def _header(
    m: WaferMap,
    grid: tuple[int, int, int, int],
    steps: tuple[int, int],
    version: tuple[int, bool, int, int],
    counts: tuple[int, int],
) -> bytes:
    info, extra = m.info, m.info.extra
    fx, fy, cols, rows = grid
    map_version, extended, site_limit, category_limit = version
    n_tested, n_pass = counts
    h = np.zeros(1, HEADER_DTYPE)
    h["operator"] = encode_text(extra.get("operator"), 20)
    h["device"] = encode_text(info.part_type, 16)
    code = _int_extra(extra, "wafer_size_code", 0, 0xFFFF)
    same_size = wafer_size_mm(code) == info.wafer_size_mm
    h["wafer_size"] = code if same_size else wafer_size_code(info.wafer_size_mm)
    h["machine_no"] = _int_extra(extra, "machine_no", 0, 0xFFFF)
    h["index_x"] = round((info.die_width_um or 0) * 100)
    h["index_y"] = round((info.die_height_um or 0) * 100)
    mark = m.orientation.mark
    h["flat_direction"] = (
        _ANGLE_BY_SIDE[mark]
        if mark is not None
        else _int_extra(extra, "flat_direction_deg", 0, 359)
    )
    h["map_version"] = map_version
    h["columns"], h["rows"] = cols, rows
    h["wafer_id"] = encode_text(info.wafer_id, 21)
    h["probing_count"] = _int_extra(extra, "probing_count", 1, 0xFF)
    h["lot_no"] = encode_text(info.lot_id, 18)
    h["cassette"] = _int_extra(extra, "cassette", 1, 0xFFFF)
    h["slot"] = _int_extra(extra, "slot", 0, 0xFFFF)
    h["x_direction"] = X_LEFTWARD if steps[0] < 0 else X_RIGHTWARD
    h["y_direction"] = Y_BACKWARD if steps[1] < 0 else Y_FORWARD
    h["center_die_x"] = info.center_x or 0
    h["center_die_y"] = info.center_y or 0
    h["first_die_x"], h["first_die_y"] = fx, fy
    h["start_time"] = encode_time(info.start_time)
    h["end_time"] = encode_time(info.end_time)
    h["load_time"] = encode_time(_time_extra(extra, "load_time"))
    h["unload_time"] = encode_time(_time_extra(extra, "unload_time"))
    tester = info.tester_id if info.tester_id != extra.get("machine_no") else None
    h["machine_no_text"] = encode_text(tester, 12)
    h["test_end"] = _int_extra(extra, "testing_end", 0, 3)
    h["tested"] = min(n_tested, 0xFFFF)
    h["passed"] = min(n_pass, 0xFFFF)
    h["failed"] = min(n_tested - n_pass, 0xFFFF)
    h["die_address"] = HEADER_SIZE
    config = CONFIG_HEADER | CONFIG_DIE_RESULTS | CONFIG_EXTENSION_HEADER
    h["configuration"] = config | (CONFIG_EXTENDED_DIE_RESULTS if extended else 0)
    h["max_multi_site"], h["max_categories"] = site_limit, category_limit
    return h.tobytes()


def write_tsk(maps: list[WaferMap], stream: BinaryIO) -> None:
    """Write exactly one wafer as a TSK map (big-endian, see the module docstring)."""
    if len(maps) != 1:
        raise FormatError(f"a TSK map holds exactly one wafer; got {len(maps)}", format=FORMAT_NAME)
    m = maps[0]
    step_x = -1 if m.orientation.x_increases == Side.LEFT else 1
    step_y = -1 if m.orientation.y_increases == Side.UP else 1
    fx, fy, cols, rows = grid = _grid(m, step_x, step_y)
    if cols > _MAX_SIDE or rows > _MAX_SIDE:
        raise FormatError(
            f"a {cols} x {rows} die grid is larger than a TSK map holds ({_MAX_SIDE} a side)",
            format=FORMAT_NAME,
        )
    cells = cols * rows
    cell = ((m.dies.y - fy) * step_y) * cols + (m.dies.x - fx) * step_x
    result = np.zeros(cells, np.int64)
    category = np.zeros(cells, np.int64)
    site = np.zeros(cells, np.int64)
    result[cell] = np.where(m.dies.passed, 1, 2)
    category[cell] = np.maximum(m.dies.hard_bin.astype(np.int64) - 1, 0)
    site[cell] = np.maximum(m.dies.site.astype(np.int64), 0)
    version = _choose_version(int(site.max()), int(category.max()))
    row, col = np.divmod(np.arange(cells, dtype=np.int64), cols)
    x_mag, x_sign = _signed_field(fx + step_x * col, 11)
    y_mag, y_sign = _signed_field(fy + step_y * row, 10)
    tested = result != 0
    words = np.empty((cells, 3), ">u2")
    words[:, 0] = (result << 14) | x_mag
    words[:, 1] = (tested.astype(np.int64) << 14) | x_sign | y_sign | y_mag
    words[:, 2] = ((site & 0x3F) << 8) | np.minimum(category, 0x3F)
    n_tested, n_pass = int(tested.sum()), int((result == 1).sum())
    ext = np.zeros(1, EXTENSION_DTYPE)
    ext["tested"], ext["passed"], ext["failed"] = n_tested, n_pass, n_tested - n_pass
    ext["failed_1"] = n_tested - n_pass
    stream.write(_header(m, grid, (step_x, step_y), version, (n_tested, n_pass)))
    stream.write(words.tobytes())
    stream.write(ext.tobytes())
    if version[1]:
        ext_words = np.zeros((cells, 2), ">u2")
        if version[0] == 2:
            ext_words[:, 0] = (site << 8) | category
        else:  # versions 4 and 7: site in word 1, category in word 2
            ext_words[:, 0], ext_words[:, 1] = site, category
        stream.write(ext_words.tobytes())
