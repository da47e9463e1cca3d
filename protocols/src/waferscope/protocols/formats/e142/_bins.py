"""E142 bin codes, axes and cells: how a BinCodeMap's text becomes die values and coordinates.

The rules (BinType widths, NullBin, BinDefinition qualities, OriginLocation / AxisDirection /
Orientation) are described in the :mod:`waferscope.protocols.formats.e142.reader` module docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.e142._xml import Node
from waferscope.protocols.wafermap import Side

__all__ = [
    "MAX_CELLS",
    "MIRROR",
    "Axes",
    "BinCodeSpec",
    "Cells",
    "Fail",
    "array_cells",
    "bin_spec",
    "coordinate_cells",
    "parse_axes",
    "parse_mark",
]

Fail = Callable[[str, int], FormatError]

_BIN_TYPES: Final = {
    "ascii": "ASCII",
    "decimal": "Decimal",
    "hexadecimal": "HexaDecimal",
    "hex": "HexaDecimal",
    "integer2": "Integer2",
}
_CODE_WIDTH: Final = {"ASCII": 1, "HexaDecimal": 2, "Integer2": 4}
_PASS_QUALITIES: Final = frozenset({"pass", "passed", "good", "ok"})
_MAX_BIN: Final = 2**31 - 1
MAX_CELLS: Final = 50_000_000  # a 7,000 x 7,000 raster; real wafer maps are far smaller


def _digit_table(digits: str) -> npt.NDArray[np.int64]:
    table = np.full(256, -1, dtype=np.int64)
    for value, ch in enumerate(digits):
        table[ord(ch)] = value
        table[ord(ch.lower())] = value
    return table


_HEX_TABLE: Final = _digit_table("0123456789ABCDEF")
_DEC_TABLE: Final = _digit_table("0123456789")


# ---------------------------------------------------------------------- bin codes
@dataclass(frozen=True, slots=True)
class BinCodeSpec:
    """How one BinCodeMap writes its codes and what each code means."""

    bin_type: str
    width: int
    null_text: str | None
    null_value: int | None
    passes: dict[int, bool]  # defined code value -> passes
    names: dict[int, str]
    counts: dict[int, int]
    notes: tuple[str, ...]

    def code_value(self, text: str, line: int, fail: Fail) -> int:
        """The number a single code stands for (see the module docstring)."""
        if self.bin_type == "ASCII":
            if len(text) != 1 or not text.isascii():
                raise fail(f"ASCII bin code {text!r} is not one ASCII character", line)
            return ord(text)
        base = 10 if self.bin_type == "Decimal" else 16
        try:
            value = int(text.strip(), base)
        except ValueError:
            raise fail(f"{self.bin_type} bin code {text!r} is not a number", line) from None
        if not 0 <= value <= _MAX_BIN:
            raise fail(f"bin code {text!r} is out of range", line)
        return value

    def code_text(self, value: int) -> str:
        if self.bin_type == "ASCII":
            return chr(value)
        return (
            f"{value:0{self.width}X}" if self.bin_type != "Decimal" else f"{value:0{self.width}d}"
        )


def bin_spec(bcm: Node, fail: Fail) -> BinCodeSpec:
    notes: list[str] = []
    raw_type = bcm.attrib.get("BinType")
    if raw_type is None or not raw_type.strip():
        bin_type = "HexaDecimal"
        notes.append("BinCodeMap has no BinType; HexaDecimal assumed")
    else:
        canonical = _BIN_TYPES.get(raw_type.strip().lower())
        if canonical is None:
            raise fail(
                f"unknown BinType {raw_type!r} (ASCII, Decimal, HexaDecimal, Integer2)", bcm.line
            )
        bin_type = canonical
    null_text = bcm.attrib.get("NullBin")
    if null_text is not None and bin_type != "ASCII":
        null_text = null_text.strip() or None
    definitions = bcm.grandchildren("BinDefinitions", "BinDefinition")
    width = _CODE_WIDTH.get(bin_type, 0)
    if bin_type == "Decimal":
        if null_text:
            width = len(null_text)
        else:
            lengths = {len(d.attrib.get("BinCode", "").strip()) for d in definitions}
            width = lengths.pop() if len(lengths) == 1 else 3
        if not 1 <= width <= 9:
            raise fail(f"Decimal bin codes of {width} digits are not supported", bcm.line)
    spec = BinCodeSpec(bin_type, width, null_text, None, {}, {}, {}, ())
    null_value = None if not null_text else spec.code_value(null_text, bcm.line, fail)
    passes: dict[int, bool] = {}
    names: dict[int, str] = {}
    counts: dict[int, int] = {}
    for definition in definitions:
        code = definition.attrib.get("BinCode")
        if code is None:
            raise fail("<BinDefinition> has no BinCode attribute", definition.line)
        value = spec.code_value(
            code if bin_type == "ASCII" else code.strip(), definition.line, fail
        )
        quality = definition.attrib.get("BinQuality", "").strip().lower()
        pick = definition.attrib.get("Pick", "").strip().lower() in ("true", "1")
        passes[value] = quality in _PASS_QUALITIES if quality else pick
        description = definition.attrib.get("BinDescription", "").strip()
        if description:
            names[value] = description
        count = definition.attrib.get("BinCount", "").strip()
        if count:
            try:
                counts[value] = int(count)
            except ValueError:
                notes.append(f"BinCount {count!r} of bin code {code!r} is not a number")
    return BinCodeSpec(bin_type, width, null_text, null_value, passes, names, counts, tuple(notes))


def _decode_row(raw: str, spec: BinCodeSpec, line: int, fail: Fail) -> npt.NDArray[np.int64]:
    """One 2DArray row as code values."""
    if spec.bin_type == "ASCII":
        keep_spaces = spec.null_text == " " or any(v == 32 for v in spec.passes)
        text = raw.strip("\r\n\t") if keep_spaces else raw.strip()
        if not text.isascii():
            raise fail("ASCII bin code row holds a non-ASCII character", line)
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64)
    text = raw.strip()
    if any(ch.isspace() for ch in text):  # blank-separated codes
        return np.array([spec.code_value(t, line, fail) for t in text.split()], dtype=np.int64)
    if len(text) % spec.width:
        raise fail(
            f"row of {len(text)} characters is not a whole number of "
            f"{spec.width}-character {spec.bin_type} codes",
            line,
        )
    if not text.isascii():
        raise fail(f"{spec.bin_type} bin code row holds a non-ASCII character", line)
    table = _DEC_TABLE if spec.bin_type == "Decimal" else _HEX_TABLE
    digits = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)].reshape(-1, spec.width)
    bad = np.flatnonzero((digits < 0).any(axis=1))
    if bad.size:
        k = int(bad[0])
        code = text[k * spec.width : (k + 1) * spec.width]
        raise fail(f"invalid {spec.bin_type} bin code {code!r} at column {k + 1}", line)
    base = 10 if spec.bin_type == "Decimal" else 16
    weights = base ** np.arange(spec.width - 1, -1, -1, dtype=np.int64)
    values: npt.NDArray[np.int64] = digits @ weights
    return values


# ---------------------------------------------------------------------- orientation
@dataclass(frozen=True, slots=True)
class Axes:
    """Where (0, 0) is in the map picture and which way x and y grow there."""

    origin_row: str  # "upper" | "lower" | "center"
    origin_col: str  # "left" | "right" | "center"
    x_right: bool  # in the source picture
    y_down: bool


def _sides(text: str) -> tuple[str | None, str | None]:
    t = text.strip().lower()
    vertical = "upper" if re.search(r"upper|top|up", t) else None
    vertical = "lower" if re.search(r"lower|bottom|down", t) else vertical
    horizontal = "left" if "left" in t else "right" if "right" in t else None
    return vertical, horizontal


def parse_axes(attrib: dict[str, str], line: int, fail: Fail) -> Axes:
    """OriginLocation and AxisDirection of a SubstrateMap (defaults LowerLeft, UpRight)."""
    origin = attrib.get("OriginLocation", "LowerLeft").strip() or "LowerLeft"
    if re.fullmatch(r"(?i)(to)?cent(er|re)", origin):
        origin_row = origin_col = "center"
    else:
        v, h = _sides(origin)
        if v is None or h is None:
            raise fail(f"OriginLocation {origin!r} is not a corner or Center", line)
        origin_row, origin_col = v, h
    axis = attrib.get("AxisDirection", "UpRight").strip() or "UpRight"
    v, h = _sides(axis)
    if v is None or h is None:
        raise fail(f"AxisDirection {axis!r} is not UpRight, DownRight, UpLeft or DownLeft", line)
    return Axes(origin_row, origin_col, x_right=h == "right", y_down=v == "lower")


_DEGREES_TO_SIDE: Final = {0: Side.DOWN, 90: Side.LEFT, 180: Side.UP, 270: Side.RIGHT}
_WORD_TO_SIDE: Final = {
    "down": Side.DOWN,
    "bottom": Side.DOWN,
    "up": Side.UP,
    "top": Side.UP,
    "left": Side.LEFT,
    "right": Side.RIGHT,
}


def parse_mark(attrib: dict[str, str], line: int, fail: Fail) -> tuple[Side | None, str | None]:
    """The notch side from Orientation (degrees clockwise from the bottom), plus a note."""
    raw = attrib.get("Orientation", "").strip()
    if not raw:
        return None, None
    word = raw.lower().removesuffix("s").removesuffix("ward")  # "Downward(s)" -> "down"
    if word in _WORD_TO_SIDE:
        return _WORD_TO_SIDE[word], None
    try:
        degrees = float(raw)
    except ValueError:
        raise fail(f"Orientation {raw!r} is not an angle in degrees", line) from None
    if not np.isfinite(degrees):
        raise fail(f"Orientation {raw!r} is not an angle in degrees", line)
    side = _DEGREES_TO_SIDE.get(int(degrees) % 360) if degrees == int(degrees) else None
    if side is None:
        return None, f"Orientation {raw} degrees is not a quarter turn; notch side left unknown"
    return side, None


# Left and right swap when a picture seen from the back is turned into the front view.
MIRROR: Final = {
    Side.LEFT: Side.RIGHT,
    Side.RIGHT: Side.LEFT,
    Side.UP: Side.UP,
    Side.DOWN: Side.DOWN,
}


# ---------------------------------------------------------------------- cells
@dataclass(frozen=True, slots=True)
class Cells:
    """The dies of one BinCodeMap: code values, coordinates, and where each came from."""

    values: npt.NDArray[np.int64]
    x: npt.NDArray[np.int64]
    y: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]  # index of the BinCode element
    column: npt.NDArray[np.int64]  # 0-based code position in that element
    columns: int = 0


def array_cells(
    rows: list[Node],
    spec: BinCodeSpec,
    axes: Axes,
    declared: tuple[int, int] | None,
    bcm: Node,
    fail: Fail,
) -> Cells:
    """Decode a 2DArray map: every row must hold the same number of codes."""
    characters = sum(len(part) for row in rows for part in row.parts)
    if characters // spec.width > MAX_CELLS:  # bound memory before decoding anything
        raise fail(f"the BinCodeMap holds more than {MAX_CELLS:,} cells", bcm.line)
    decoded = [_decode_row(r.text, spec, r.line, fail) for r in rows]
    columns = declared[0] if declared is not None else (decoded[0].size if decoded else 0)
    for row, codes in zip(rows, decoded, strict=True):
        if codes.size != columns:
            source = "Layout Dimension X" if declared is not None else "the first row"
            raise fail(f"row holds {codes.size} bin codes, {source} says {columns}", row.line)
    if declared is not None and declared[1] != len(rows):
        raise fail(
            f"BinCodeMap has {len(rows)} rows, Layout Dimension Y says {declared[1]}", bcm.line
        )
    grid = np.stack(decoded) if decoded else np.zeros((0, columns), dtype=np.int64)
    present = grid != spec.null_value if spec.null_value is not None else np.ones_like(grid, bool)
    r, c = np.nonzero(present)
    n_rows = len(rows)
    r0 = {"upper": 0, "lower": n_rows - 1, "center": n_rows // 2}[axes.origin_row]
    c0 = {"left": 0, "right": columns - 1, "center": columns // 2}[axes.origin_col]
    x = (c - c0) if axes.x_right else (c0 - c)
    y = (r - r0) if axes.y_down else (r0 - r)
    return Cells(grid[r, c], x.astype(np.int64), y.astype(np.int64), r, c, columns)


def coordinate_cells(rows: list[Node], spec: BinCodeSpec, fail: Fail) -> Cells:
    """Decode a coordinate map: each BinCode element is one die at its X, Y attributes."""
    values: list[int] = []
    xs: list[int] = []
    ys: list[int] = []
    index: list[int] = []
    for i, row in enumerate(rows):
        try:
            x, y = int(row.attrib["X"]), int(row.attrib["Y"])
        except (KeyError, ValueError):
            raise fail("coordinate BinCode needs integer X and Y attributes", row.line) from None
        if max(abs(x), abs(y)) > _MAX_BIN:
            raise fail(f"coordinates ({x}, {y}) are out of range", row.line)
        text = row.text.strip("\r\n\t") if spec.bin_type == "ASCII" else row.text.strip()
        value = spec.code_value(text, row.line, fail)
        if value == spec.null_value:
            continue
        values.append(value)
        xs.append(x)
        ys.append(y)
        index.append(i)
    return Cells(
        np.array(values, dtype=np.int64),
        np.array(xs, dtype=np.int64),
        np.array(ys, dtype=np.int64),
        np.array(index, dtype=np.int64),
        np.zeros(len(index), dtype=np.int64),
    )
