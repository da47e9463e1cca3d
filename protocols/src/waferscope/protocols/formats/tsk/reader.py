"""TSK / Accretech (Tokyo Seimitsu) UF-series prober map: reader and writer.

A TSK map is one wafer: the 236-byte header described in :mod:`._header`, then one test
result per cell of the map data area (``columns x rows`` cells, stored row by row from the
top-left of the map picture), then, depending on the map version and the configuration bits,
line category data, a 172-byte extension header and an extended result per die.

Test result per die (versions 0 and 2-7; three big-endian words, bits numbered from 0 = LSB):

* word 1: bits 15-14 die test result (0 not tested, 1 pass, 2 fail 1, 3 fail 2), 13 marking,
  12 fail-mark inspection, 11-10 re-probing result, 9 needle-mark inspection,
  8-0 X coordinate magnitude;
* word 2: bits 15-14 die property (0 skip, 1 probing, 2 compulsory marking), 13 needle-mark
  inspection die, 12 sampling die, 11/10 sign bits of X/Y (1 = negative), 9 dummy data,
  8-0 Y coordinate magnitude;
* word 3: bit 15 measurement finished, 14 reject chip, 13-8 test site (0-63),
  7-6 block area judgement, 5-0 category (0-63).

Version 1 ("250,000 chips") stores two bytes per die instead: result (bits 7-6) and category
(5-0), then marking (bit 7) and test site (5-0), without coordinates. The extended result
(4 bytes per die, configuration bit 4) widens site and category: version 2/3 word 1 = site
(high byte) and category (low byte); version 4: word 1 bits 8-0 site, word 2 bits 9-0
category; version 7: word 1 bits 12-0 site, word 2 bits 13-0 category. Stored categories are
"0 to N-1, add 1 for the actual category", so ``hard_bin`` is the stored value + 1; a map
whose tested dies all carry stored category 0 records no categories, and gets -1.

Sources: *A-PM-90A / UF Series Map Data File Manual* FT01000-R018-E7 via the public readers
larvata/tsk-parser, Ian-HL/tsk-parser, bangbang93/tsk-file.kt and MapIO.TSK.

Dies in the returned map are the tested cells (result 1-3); skip and marking cells are left
out. Coordinates are the header's first-die coordinate plus the grid position along the
declared directions, checked against the die records (9-bit magnitude and sign, so only
+-511 fits there); when the records disagree but form a consistent grid of their own they are
used instead, and when they follow no grid the header wins (each with a note).

Truncated input: a file that ends inside the header raises :class:`TruncatedError`. One that
ends inside the test results yields the complete records as a wafer with ``partial=True``; one
that ends inside the line category, extension header or extended results yields the whole
wafer (from the basic records) with ``partial=True``. Each case leaves a note.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.tsk._header import (
    EXTENSION_DTYPE,
    EXTENSION_HEADER_SIZE,
    HEADER_DTYPE,
    HEADER_SIZE,
    X_LEFTWARD,
    Y_BACKWARD,
    SectionLayout,
    decode_text,
    decode_time,
    header_problem,
    section_layout,
    wafer_size_mm,
)
from waferscope.protocols.formats.tsk.writer import write_tsk
from waferscope.protocols.wafermap import (
    UNKNOWN,
    DieTable,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FORMAT_NAME: Final = "tsk"
_INT32_MAX: Final = 2**31 - 1
_CHUNK: Final = 8 << 20
_SIDE_BY_ANGLE: Final = {0: Side.UP, 90: Side.RIGHT, 180: Side.DOWN, 270: Side.LEFT}

IntArray = npt.NDArray[np.int64]


class TskFormat:
    """Reader/writer for TSK / Accretech UF-series binary prober maps (one wafer per file)."""

    name: ClassVar[str] = FORMAT_NAME
    title: ClassVar[str] = "TSK / Accretech UF-series prober map (binary, map versions 0-7)"

    def sniff(self, head: bytes) -> bool:
        return header_problem(head) is None

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        yield read_tsk(source, options)

    def write(self, maps: list[WaferMap], stream: BinaryIO) -> None:
        write_tsk(maps, stream)


def _error(source: Source, reason: str, offset: int | None = None) -> FormatError:
    return FormatError(reason, format=FORMAT_NAME, source=source.name, offset=offset)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, in chunks (a hostile header must not make us allocate it all)."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = stream.read(min(size, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_tsk(source: Source, options: ReadOptions) -> WaferMap:
    """Decode one TSK map from ``source`` (see the module docstring for the layout)."""
    head = source.stream.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise TruncatedError(
            f"file ends inside the {HEADER_SIZE}-byte map header",
            format=FORMAT_NAME,
            source=source.name,
            offset=len(head),
        )
    problem = header_problem(head)
    if problem is not None:
        raise _error(source, f"not a TSK prober map: {problem}", 0)
    h = np.frombuffer(head, HEADER_DTYPE, count=1)[0]
    cols, rows = int(h["columns"]), int(h["rows"])
    cells = cols * rows
    if cells > options.max_dies:
        raise _error(
            source, f"map data area of {cells:,} cells exceeds the {options.max_dies:,} limit", 52
        )
    layout = section_layout(h, cells)
    data = head + _read_up_to(source.stream, layout.end - HEADER_SIZE)
    notes: list[str] = []
    if source.truncated:
        notes.append("the compressed container ended early")
    decoded = _decode_records(data, h, layout, cells, notes)
    return _build_map(source, head, h, layout, decoded, notes)


class _Records:
    """Per-cell arrays of the complete die records (index = row * columns + column)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.result: IntArray = np.zeros(count, np.int64)
        self.category: IntArray = np.zeros(count, np.int64)
        self.site: IntArray = np.zeros(count, np.int64)
        self.x: IntArray | None = None  # record coordinates (absent in version 1)
        self.y: IntArray | None = None
        self.extension: Any | None = None  # the extension header, when present and complete
        self.all_dies = False  # every cell's record was read
        self.partial = False


def _array(data: bytes, dtype: npt.DTypeLike, count: int, offset: int) -> npt.NDArray[Any]:
    """``count`` items at ``offset`` (an empty array when there are none)."""
    if count <= 0:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype, count=count, offset=offset)


def _decode_records(
    data: bytes, h: Any, layout: SectionLayout, cells: int, notes: list[str]
) -> _Records:
    version = int(h["map_version"])
    have = len(data)
    available = max(0, (have - layout.die_offset) // layout.die_record_size)
    complete = min(cells, available)
    rec = _Records(complete)
    rec.all_dies = complete == cells
    if not rec.all_dies:
        rec.partial = True
        notes.append(
            f"the file ends inside the test results: {complete:,} of {cells:,} die records"
        )
    ext_header = layout.extension_header_offset
    if ext_header is not None and have >= ext_header + EXTENSION_HEADER_SIZE:
        rec.extension = np.frombuffer(data, EXTENSION_DTYPE, count=1, offset=ext_header)[0]
    if version == 1:
        raw = _array(data, np.uint8, 2 * complete, layout.die_offset)
        pairs = raw.reshape(-1, 2).astype(np.int64)
        rec.result = pairs[:, 0] >> 6
        rec.category = pairs[:, 0] & 0x3F
        rec.site = pairs[:, 1] & 0x3F
    else:
        words = _array(data, ">u2", 3 * complete, layout.die_offset)
        w = words.reshape(-1, 3).astype(np.int64)
        rec.result = w[:, 0] >> 14
        rec.x = np.where((w[:, 1] >> 11) & 1, -(w[:, 0] & 0x1FF), w[:, 0] & 0x1FF)
        rec.y = np.where((w[:, 1] >> 10) & 1, -(w[:, 1] & 0x1FF), w[:, 1] & 0x1FF)
        rec.site = (w[:, 2] >> 8) & 0x3F
        rec.category = w[:, 2] & 0x3F
    if rec.partial:
        return rec
    if ext_header is not None and rec.extension is None:
        rec.partial = True
        notes.append("the file ends inside the line category data or the extension header")
        return rec
    if layout.extended_die_offset is not None and version != 1:
        _apply_extended(data, version, layout.extended_die_offset, cells, rec, notes)
    return rec


def _apply_extended(
    data: bytes, version: int, offset: int, cells: int, rec: _Records, notes: list[str]
) -> None:
    """Wider site/category from the 4-byte extended result per die (versions 2, 3, 4, 7)."""
    if len(data) < offset + 4 * cells:
        rec.partial = True
        notes.append("the file ends inside the extended test results; 6-bit categories kept")
        return
    ext = np.frombuffer(data, ">u2", count=2 * cells, offset=offset).reshape(-1, 2)
    ext = ext.astype(np.int64)
    if version in (2, 3):
        rec.site, rec.category = ext[:, 0] >> 8, ext[:, 0] & 0xFF
    elif version == 4:
        rec.site, rec.category = ext[:, 0] & 0x1FF, ext[:, 1] & 0x3FF
    elif version == 7:
        rec.site, rec.category = ext[:, 0] & 0x1FFF, ext[:, 1] & 0x3FFF
    else:
        notes.append(
            f"the extended results of map version {version} are not publicly documented; "
            "site and category come from the basic record"
        )


def _nine_bit(values: IntArray) -> IntArray:
    """Coordinates as a die record stores them: sign and the low 9 bits of the magnitude."""
    magnitude = np.abs(values) & 0x1FF
    return np.where(values < 0, -magnitude, magnitude)


def _coordinates(
    h: Any, rec: _Records, tested: IntArray, cols: int, notes: list[str]
) -> tuple[IntArray, IntArray]:
    """Die coordinates of the tested cells: from the records if they follow the grid."""
    row, col = np.divmod(tested, cols)
    step_x = -1 if int(h["x_direction"]) == X_LEFTWARD else 1
    step_y = -1 if int(h["y_direction"]) == Y_BACKWARD else 1
    first_x, first_y = int(h["first_die_x"]), int(h["first_die_y"])
    grid_x = first_x + step_x * col
    grid_y = first_y + step_y * row
    if rec.x is None or rec.y is None or tested.size == 0:
        return grid_x, grid_y
    rec_x, rec_y = rec.x[tested], rec.y[tested]
    # The records hold a 9-bit magnitude and a sign: compare with the grid in that form, so
    # that maps with coordinates beyond +-511 (carried by the header alone) agree too.
    if np.array_equal(rec_x, _nine_bit(grid_x)) and np.array_equal(rec_y, _nine_bit(grid_y)):
        return grid_x, grid_y
    off_x = rec_x - step_x * col
    off_y = rec_y - step_y * row
    if np.all(off_x == off_x[0]) and np.all(off_y == off_y[0]):
        notes.append(
            f"header first-die coordinate ({first_x}, {first_y}) disagrees with the die "
            f"records ({int(off_x[0])}, {int(off_y[0])}); die-record coordinates used"
        )
        return rec_x, rec_y
    notes.append(
        "die-record coordinates do not follow the map grid; coordinates derived from the header"
    )
    return grid_x, grid_y


def _count_check(
    h: Any, data_counts: tuple[int, int, int], ext: Any | None, notes: list[str]
) -> None:
    tested, passed, failed = data_counts
    declared = (int(h["tested"]), int(h["passed"]), int(h["failed"]))
    if max(data_counts) <= 0xFFFF and declared != data_counts:
        notes.append(
            f"header declares {declared[0]:,} tested / {declared[1]:,} pass / {declared[2]:,} fail "
            f"dice; the die records hold {tested:,} / {passed:,} / {failed:,}"
        )
    if ext is not None:
        ext_counts = (int(ext["tested"]), int(ext["passed"]), int(ext["failed"]))
        if ext_counts != data_counts:
            notes.append(
                f"extension header declares {ext_counts[0]:,} tested / {ext_counts[1]:,} pass / "
                f"{ext_counts[2]:,} fail dice; the die records hold {tested:,} / {passed:,} / "
                f"{failed:,}"
            )


def _orientation(h: Any, notes: list[str]) -> Orientation:
    angle = int(h["flat_direction"])
    nearest = (round(angle / 90) * 90) % 360
    if nearest != angle:
        notes.append(f"orientation flat direction {angle} degrees taken as {nearest}")
    return Orientation(
        mark=_SIDE_BY_ANGLE[nearest],
        mark_kind=None,  # the header names flats and notches alike "orientation flat"
        x_increases=Side.LEFT if int(h["x_direction"]) == X_LEFTWARD else Side.RIGHT,
        y_increases=Side.UP if int(h["y_direction"]) == Y_BACKWARD else Side.DOWN,
    )


def _info(h: Any, head: bytes) -> WaferInfo:
    def um(value: int) -> float | None:
        return value / 100.0 if value > 0 else None

    center = (int(h["center_die_x"]), int(h["center_die_y"]))
    machine_text = decode_text(bytes(h["machine_no_text"]))
    machine_no = int(h["machine_no"])
    extra = {
        "operator": decode_text(head[0:20]),
        "map_version": str(int(h["map_version"])),
        "machine_no": str(machine_no),
        "cassette": str(int(h["cassette"])),
        "slot": str(int(h["slot"])),
        "probing_count": str(int(h["probing_count"])),
        "wafer_size_code": str(int(h["wafer_size"])),
        "flat_direction_deg": str(int(h["flat_direction"])),
        "first_die_x": str(int(h["first_die_x"])),
        "first_die_y": str(int(h["first_die_y"])),
        "configuration": f"0x{int(h['configuration']):04x}",
        "testing_end": str(int(h["test_end"])),
    }
    for key, field in (("load_time", "load_time"), ("unload_time", "unload_time")):
        when = decode_time(bytes(h[field]))
        if when is not None:
            extra[key] = when.isoformat()
    return WaferInfo(
        lot_id=decode_text(head[82:100]) or None,
        wafer_id=decode_text(head[60:81]) or None,
        tester_id=machine_text or (str(machine_no) if machine_no else None),
        part_type=decode_text(head[20:36]) or None,
        start_time=decode_time(bytes(h["start_time"])),
        end_time=decode_time(bytes(h["end_time"])),
        wafer_size_mm=wafer_size_mm(int(h["wafer_size"])),
        die_width_um=um(int(h["index_x"])),
        die_height_um=um(int(h["index_y"])),
        center_x=None if center == (0, 0) else center[0],
        center_y=None if center == (0, 0) else center[1],
        grid_columns=int(h["columns"]),
        grid_rows=int(h["rows"]),
        extra=extra,
    )


def _build_map(
    source: Source, head: bytes, h: Any, layout: SectionLayout, rec: _Records, notes: list[str]
) -> WaferMap:
    cols = int(h["columns"])
    tested = np.flatnonzero(rec.result != 0)
    x, y = _coordinates(h, rec, tested, cols, notes)
    result = rec.result[tested]
    passed = result == 1
    category = rec.category[tested]
    if category.size and not category.any():
        notes.append("the map records no categories (all tested dies hold category 0)")
        hard_bin: IntArray = np.full(category.shape, UNKNOWN, np.int64)
    else:
        hard_bin = category + 1
    if x.size and max(int(np.abs(x).max()), int(np.abs(y).max())) > _INT32_MAX:
        raise _error(source, "die coordinates do not fit 32-bit integers", 140)
    counts = (int(tested.size), int(passed.sum()), int(tested.size - passed.sum()))
    if rec.all_dies:
        _count_check(h, counts, rec.extension, notes)
    dies = DieTable.build(x=x, y=y, passed=passed, hard_bin=hard_bin, site=rec.site[tested])
    return WaferMap(
        dies=dies,
        provenance=Provenance(
            source=source.name, format=FORMAT_NAME, wafer_index=0, offset=layout.die_offset
        ),
        info=_info(h, head),
        orientation=_orientation(h, notes),
        partial=rec.partial,
        notes=tuple(notes),
    )
