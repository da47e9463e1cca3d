"""The fixed 236-byte header of a TSK / Accretech prober map, as a numpy structured dtype.

Layout source: *A-PM-90A / UF Series Map Data File Manual* (Tokyo Seimitsu, FT01000-R018-E7),
as transcribed by the public readers larvata/tsk-parser, Ian-HL/tsk-parser and
bangbang93/tsk-file.kt (field order and sizes) and by the public MapIO.TSK sources (byte offsets,
map versions 0-7, the map-file-configuration bits and the extension sections). All multi-byte
numbers are big-endian ("Motorola byte arrangement", as the manual's preface puts it); text
fields are fixed-width ASCII padded with spaces or NULs.

=====  ====  =====================================================================
 off    len  field
=====  ====  =====================================================================
   0     20  operator name
  20     16  device name
  36      2  wafer size: 40/45/50/60/80 in 0.1 inch, or 100/115/125/150/200... in mm
  38      2  machine number
  40      4  index size X (die pitch), 0.01 um
  44      4  index size Y, 0.01 um
  48      2  orientation flat direction, degrees (0-359)
  50      1  final editing machine type
  51      1  map version: 0 normal, 1 250,000 chips, 2 256 multi-site, 3 256 multi-site
             without extended header, 4 1024 categories, 5 2048 multi-site, 6 extended
             header 2, 7 9999 categories
  52      2  map data area row size = number of columns
  54      2  map data area line size = number of rows
  56      4  map data form
  60     21  wafer ID
  81      1  number of probings
  82     18  lot number
 100      2  cassette number
 102      2  slot number
 104      1  X coordinates increase direction: 1 leftward, 2 rightward
 105      1  Y coordinates increase direction: 1 forward, 2 backward
 106      1  reference die setting procedure (1 wafer centre, 2 teaching, 3 target sense)
 108  4+4+2+2  target die position X/Y (0.01 um), reference die coordinate X/Y
 120      1  probing start position; 121: probing direction
 124  4*4   distance X/Y from wafer centre to die origin, coordinate X/Y of the centre die
 140    4+4  coordinate X/Y of the first die of the map data area
 148  4*12   test start, test end, wafer load, wafer unload times: "YYMMDDHHmm" + 2 reserved
 196     12  machine number 1, machine number 2, special characters (4 each)
 208      1  testing end information (0 normal, 1 yield NG, 2 continuous fail NG, 3 manual)
 210    2*3  total tested / pass / fail dice
 216      4  byte address of the test result per die
 220      4  number of line category data; 224: line category address
 228      2  map file configuration bits (map version 2 and later)
 230    2+2  maximum multi-site, maximum categories
=====  ====  =====================================================================

"Forward" is towards the front of the prober, which is the bottom of the map picture: the test
result area is stored row by row from the top-left of the picture (checked on a real version-2
map: with X "leftward" and Y "backward", X falls by one per column and Y by one per row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np

HEADER_SIZE: Final = 236
EXTENSION_HEADER_SIZE: Final = 172
MAX_MAP_VERSION: Final = 7

# Map file configuration bits (offset 228).
CONFIG_HEADER: Final = 1 << 0
CONFIG_DIE_RESULTS: Final = 1 << 1
CONFIG_LINE_CATEGORY: Final = 1 << 2
CONFIG_EXTENSION_HEADER: Final = 1 << 3
CONFIG_EXTENDED_DIE_RESULTS: Final = 1 << 4

X_LEFTWARD: Final = 1
X_RIGHTWARD: Final = 2
Y_FORWARD: Final = 1  # towards the prober front = down in the map picture
Y_BACKWARD: Final = 2

_FIELDS: Final[tuple[tuple[str, str, int], ...]] = (
    ("operator", "S20", 0),
    ("device", "S16", 20),
    ("wafer_size", ">u2", 36),
    ("machine_no", ">u2", 38),
    ("index_x", ">u4", 40),
    ("index_y", ">u4", 44),
    ("flat_direction", ">u2", 48),
    ("machine_type", "u1", 50),
    ("map_version", "u1", 51),
    ("columns", ">u2", 52),
    ("rows", ">u2", 54),
    ("map_data_form", ">u4", 56),
    ("wafer_id", "S21", 60),
    ("probing_count", "u1", 81),
    ("lot_no", "S18", 82),
    ("cassette", ">u2", 100),
    ("slot", ">u2", 102),
    ("x_direction", "u1", 104),
    ("y_direction", "u1", 105),
    ("reference_setting", "u1", 106),
    ("target_x", ">i4", 108),
    ("target_y", ">i4", 112),
    ("reference_x", ">i2", 116),
    ("reference_y", ">i2", 118),
    ("probing_start", "u1", 120),
    ("probing_direction", "u1", 121),
    ("center_distance_x", ">i4", 124),
    ("center_distance_y", ">i4", 128),
    ("center_die_x", ">i4", 132),
    ("center_die_y", ">i4", 136),
    ("first_die_x", ">i4", 140),
    ("first_die_y", ">i4", 144),
    ("start_time", "S12", 148),
    ("end_time", "S12", 160),
    ("load_time", "S12", 172),
    ("unload_time", "S12", 184),
    ("machine_no_text", "S12", 196),
    ("test_end", "u1", 208),
    ("tested", ">u2", 210),
    ("passed", ">u2", 212),
    ("failed", ">u2", 214),
    ("die_address", ">u4", 216),
    ("line_category_count", ">u4", 220),
    ("line_category_address", ">u4", 224),
    ("configuration", ">u2", 228),
    ("max_multi_site", ">u2", 230),
    ("max_categories", ">u2", 232),
)

HEADER_DTYPE: Final = np.dtype(
    {
        "names": [f[0] for f in _FIELDS],
        "formats": [f[1] for f in _FIELDS],
        "offsets": [f[2] for f in _FIELDS],
        "itemsize": HEADER_SIZE,
    }
)

# Extension header (172 bytes): test start/end time copies, continuous-fail count, then at
# byte 52 the tested/pass/fail dice as 4-byte counts (2-byte counts overflow on big maps).
EXTENSION_DTYPE: Final = np.dtype(
    {
        "names": ["tested", "passed", "failed", "failed_1", "failed_2"],
        "formats": [">u4", ">u4", ">u4", ">u4", ">u4"],
        "offsets": [52, 56, 60, 64, 68],
        "itemsize": EXTENSION_HEADER_SIZE,
    }
)

_TEXT_FIELDS: Final = (("operator", 0, 20), ("device", 20, 36), ("wafer_id", 60, 81))
_LOT_FIELD: Final = (82, 100)
_TIME_FIELDS: Final = (148, 160, 172, 184)
_TIME_BYTES: Final = frozenset(b"0123456789 \x00")
_MAX_GRID_SIDE: Final = 4096
_NOMINAL_WAFER_MM: Final = {40: 100.0, 45: 115.0, 50: 125.0, 60: 150.0, 80: 200.0, 120: 300.0}
_TIME_RE: Final = re.compile(rb"(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)")


def _text_ok(raw: bytes) -> bool:
    """Fixed-width text: NUL padding or characters, never other control bytes."""
    return all(b == 0 or (b >= 0x20 and b != 0x7F) for b in raw)


def header_problem(head: bytes) -> str | None:
    """Why the first bytes are not a TSK map header, or None when they are plausible.

    TSK maps have no magic number, so this checks what every documented map version fixes:
    text fields free of control bytes, a known map version, direction codes 0-2, a flat
    angle below 360, a non-empty grid of sane size, digit-only time stamps and a die-result
    address inside the header's reach. Text files fail at once (bytes 104/105 must be 0-2),
    random bytes almost always.
    """
    if len(head) < HEADER_SIZE:
        return f"shorter than the {HEADER_SIZE}-byte map header"
    for name, start, end in (*_TEXT_FIELDS, ("lot number", *_LOT_FIELD)):
        if not _text_ok(head[start:end]):
            return f"the {name.replace('_', ' ')} field holds control bytes"
    if head[51] > MAX_MAP_VERSION:
        return f"unknown map version {head[51]}"
    if head[104] > 2 or head[105] > 2:
        return f"coordinate directions {head[104]}/{head[105]} are not 1 or 2"
    if head[106] > 3:
        return f"unknown reference die setting procedure {head[106]}"
    h = np.frombuffer(head, HEADER_DTYPE, count=1)[0]
    if int(h["flat_direction"]) >= 360:
        return f"orientation flat direction {int(h['flat_direction'])} is not below 360 degrees"
    cols, rows = int(h["columns"]), int(h["rows"])
    if not (0 < cols <= _MAX_GRID_SIDE and 0 < rows <= _MAX_GRID_SIDE):
        return f"map data area of {cols} x {rows} dies is empty or larger than {_MAX_GRID_SIDE}"
    for start in _TIME_FIELDS:
        if not set(head[start : start + 10]) <= _TIME_BYTES:
            return f"the time stamp at byte {start} is not digits"
    address = int(h["die_address"])
    if address and not HEADER_SIZE <= address <= HEADER_SIZE + 2 * EXTENSION_HEADER_SIZE:
        return f"test result address {address} lies outside the header area"
    return None


def decode_text(raw: bytes) -> str:
    """A fixed-width text field: up to the first NUL, trailing/leading blanks removed."""
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def encode_text(text: str | None, width: int) -> bytes:
    data = (text or "").encode("latin-1", errors="replace")[:width]
    return data.ljust(width, b" ")


def decode_time(raw: bytes) -> datetime | None:
    """A "YYMMDDHHmm" time stamp (years 70-99 are 19xx, the rest 20xx); None if unset/invalid."""
    m = _TIME_RE.match(raw[:10])
    if m is None:
        return None
    yy, mo, dd, hh, mi = (int(g) for g in m.groups())
    try:
        return datetime(1900 + yy if yy >= 70 else 2000 + yy, mo, dd, hh, mi)
    except ValueError:
        return None


def encode_time(when: datetime | None) -> bytes:
    if when is None:
        return b" " * 12
    return when.strftime("%y%m%d%H%M").encode("ascii") + b"  "


def wafer_size_mm(code: int) -> float | None:
    """Wafer diameter in mm from the header code (0.1 inch below 100, mm from 100 on)."""
    if code <= 0:
        return None
    if code in _NOMINAL_WAFER_MM:
        return _NOMINAL_WAFER_MM[code]
    return float(code) if code >= 100 else round(code * 2.54, 1)


def wafer_size_code(mm: float | None) -> int:
    """Header code for a diameter: the mm value itself (the manual's mm unit), 0 if unknown."""
    if mm is None:
        return 0
    return max(0, min(0xFFFF, round(mm)))


@dataclass(frozen=True, slots=True)
class SectionLayout:
    """Byte offsets of the sections after the header (None where a section is absent)."""

    die_offset: int
    die_record_size: int
    extension_header_offset: int | None
    extended_die_offset: int | None
    extended_die_size: int
    end: int


def section_layout(h: Any, total_dies: int) -> SectionLayout:
    """Where each section lies, from the map version and the configuration bits.

    Version 1 (250,000 chips): header, extension header, 2-byte result per die, then a 1-byte
    extended result per die. Versions 0 and 2-7: header, 6-byte result per die, then for
    version 2+ as the configuration says: line category data (8 bytes each), the extension
    header and 4 bytes of extended result per die.
    """
    version = int(h["map_version"])
    address = int(h["die_address"])
    if version == 1:
        die_offset = address or HEADER_SIZE + EXTENSION_HEADER_SIZE
        v1_ext_die = die_offset + 2 * total_dies
        return SectionLayout(die_offset, 2, HEADER_SIZE, v1_ext_die, 1, v1_ext_die + total_dies)
    die_offset = address or HEADER_SIZE
    end = die_offset + 6 * total_dies
    config = int(h["configuration"]) if version >= 2 else 0
    ext_header: int | None = None
    ext_die: int | None = None
    if config & CONFIG_LINE_CATEGORY:
        # 8 bytes per die; the count and address are used only where they are plausible
        count = min(int(h["line_category_count"]) or total_dies, total_dies)
        address = int(h["line_category_address"])
        start = address if end <= address <= end + 8 * total_dies else end
        end = start + 8 * count
    if config & CONFIG_EXTENSION_HEADER:
        ext_header = end
        end += EXTENSION_HEADER_SIZE
    if config & CONFIG_EXTENDED_DIE_RESULTS:
        ext_die = end
        end += 4 * total_dies
    return SectionLayout(die_offset, 6, ext_header, ext_die, 4, end)
