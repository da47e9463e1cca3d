"""KLARF (KLA Results File) reader: inspection defect lists, versions 1.1, 1.2 and 1.8.

Syntax is handled by :mod:`._v1` (semicolon-terminated statements) and :mod:`._v18`
(nested ``Record``/``Field``/``List`` blocks); this module turns each wafer into a
:class:`WaferMap`:

* dies: every die of the sample test plan (``SampleTestPlan`` / ``SampleTestPlanList``, all
  inspection tests together, less the ``RemovedDieList``) plus every die a defect lies on;
  ``defect_count`` is the number of defects on the die, ``passed`` is ``defect_count == 0``.
  Die indexes (``XINDEX``/``YINDEX``) are kept as declared: KLARF places die (0, 0) at the
  die origin and grows X to the right and Y upwards, the defect position inside the die being
  ``XREL``/``YREL`` from the die's lower-left corner (KLARF 1.2 specification; see also the
  public Impro02/klarf-reader, which computes wafer x = XINDEX * pitch + XREL - centre).
* defects: one :class:`Defect` per ``DefectList`` row: ``DEFECTID``, die index, ``XREL``/
  ``YREL`` in um, ``DSIZE`` in um, ``CLASSNUMBER``; every other column is kept as a string
  attribute in the file's own units (``info.extra["length_unit"]``), plus ``CLASSNAME`` from
  the class lookup. ``NA`` values read as unknown (NaN positions, ``None`` size/class).
* orientation: ``OrientationMarkLocation`` (``UP``/``DOWN``/``LEFT``/``RIGHT`` in 1.1/1.2,
  degrees in 1.8 with 0 = down, 90 = left, 180 = up, 270 = right as btrapp/jklarfreader maps
  them), ``SampleOrientationMarkType`` (``NOTCH``/``FLAT``), X right, Y up.
* info: ``LotID``, ``WaferID``, ``DeviceID`` (part type), ``SetupID``/``RecipeID`` (program),
  ``InspectionStationID`` (tester), ``ResultTimestamp`` (start time), ``SampleSize`` (wafer
  diameter), ``DiePitch`` (die size), the die holding the ``SampleCenterLocation`` (centre).

Lengths are um in 1.1/1.2 and nm in 1.8 (converted to um here). The summary's ``NDEFECT`` is
checked against the defect list (a mismatch is a note, not an error).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from operator import itemgetter
from types import MappingProxyType
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.klarf._lexer import (
    FORMAT_NAME,
    INT32_MAX,
    Tokens,
    gc_paused,
    unquote,
)
from waferscope.protocols.formats.klarf._v1 import parse_v1
from waferscope.protocols.formats.klarf._v18 import parse_v18
from waferscope.protocols.formats.klarf._wafer import RawWafer
from waferscope.protocols.wafermap import (
    Defect,
    DieTable,
    MarkKind,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FloatArray = npt.NDArray[np.float64]

_SNIFF_RE: Final = re.compile(
    r"\A(?:\xef\xbb\xbf)?\s*(?:FileVersion\s+\d+\s+\d+|Record\s+FileRecord\b)", re.IGNORECASE
)
_MISSING: Final = frozenset({"NA", "N/A", "NAN", "-", ""})
_MAPPED: Final = frozenset({"DEFECTID", "XREL", "YREL", "XINDEX", "YINDEX", "DSIZE", "CLASSNUMBER"})
_SIDES: Final = {"UP": Side.UP, "DOWN": Side.DOWN, "LEFT": Side.LEFT, "RIGHT": Side.RIGHT}
_SIDE_BY_DEGREES: Final = {0: Side.DOWN, 90: Side.LEFT, 180: Side.UP, 270: Side.RIGHT}
_DATE_MDY: Final = re.compile(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4}|\d{2})$")
_DATE_YMD: Final = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
_TIME: Final = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_EXTRA_FIELDS: Final = {
    "FILEVERSION": "file_version",
    "FILETIMESTAMP": "file_timestamp",
    "RESULTTIMESTAMP": "result_timestamp",
    "INSPECTIONSTATIONID": "inspection_station",
    "SAMPLETYPE": "sample_type",
    "SAMPLESIZE": "sample_size",
    "SETUPID": "setup_id",
    "STEPID": "step_id",
    "SLOT": "slot",
    "WAFERSCRIBE": "wafer_scribe",
    "DIEORIGIN": "die_origin",
    "SAMPLECENTERLOCATION": "sample_center_location",
    "SAMPLEORIENTATIONMARKTYPE": "orientation_mark_type",
    "ORIENTATIONMARKLOCATION": "orientation_mark_location",
    "COORDINATESMIRRORED": "coordinates_mirrored",
    "SAMPLEDIEMAP": "sample_die_map_dies",
}


class KlarfFormat:
    """Reader for KLARF 1.1 / 1.2 / 1.8 inspection results (one map per wafer)."""

    name: ClassVar[str] = FORMAT_NAME
    title: ClassVar[str] = "KLARF (KLA Results File) 1.1/1.2/1.8 inspection defect lists"

    def sniff(self, head: bytes) -> bool:
        return _SNIFF_RE.match(head[:4096].decode("latin-1")) is not None

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        data = source.read_all(options.max_text_bytes)
        with gc_paused():
            tokens = Tokens(data, source.name)
            if not len(tokens):
                raise FormatError(
                    "the file is empty", format=FORMAT_NAME, source=source.name, line=1
                )
            raws = parse_v18(tokens) if tokens.values[0] == "Record" else parse_v1(tokens)
        if source.truncated and raws:
            raws[-1].partial = True
            raws[-1].notes.append("the compressed container ended early")
        for index, raw in enumerate(raws):
            yield build_map(raw, source.name, index, options)


def _number(raw: RawWafer, token: str, index: int, column: str) -> float:
    """One value as a float (NaN when missing: NA, empty, non-finite)."""
    value = unquote(token)
    if value.upper() in _MISSING:
        return math.nan
    try:
        number = float(value)
    except ValueError:
        raw.tokens.fail_at(f"{column} value {value[:40]!r} is not a number", index)
    return number if math.isfinite(number) else math.nan


def _column(raw: RawWafer, name: str, columns: dict[str, tuple[str, ...]]) -> FloatArray | None:
    """A numeric defect column as floats (NaN = missing), or None if the spec lacks it."""
    tokens = columns.get(name)
    if tokens is None:
        return None
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:  # NA, quoted numbers or garbage: value by value, naming the line
        starts = raw.defect_starts
        values = np.array(
            [_number(raw, tok, starts[k], name) for k, tok in enumerate(tokens)], np.float64
        )
    values[~np.isfinite(values)] = np.nan
    return values


def _column_or_nan(raw: RawWafer, name: str, columns: dict[str, tuple[str, ...]]) -> FloatArray:
    values = _column(raw, name, columns)
    return np.full(len(raw.defect_rows), np.nan) if values is None else values


def _floats(raw: RawWafer, name: str, nm: bool) -> list[float] | None:
    """A numeric field's values (lengths in um when ``nm``), None if absent or not finite."""
    values = raw.fields.get(name)
    if not values:
        return None
    try:
        numbers = [float(v) / 1000.0 if nm else float(v) for v in values]
    except ValueError:
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _check_integers(raw: RawWafer, name: str, values: FloatArray, limit: float) -> None:
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(values) & ((values != np.floor(values)) | (np.abs(values) > limit))
    if bad.any():
        k = int(np.argmax(bad))
        token = raw.defect_rows[k][raw.defect_columns.index(name)]
        raw.tokens.fail_at(
            f"{name} value {token[:40]!r} is not an integer in range", raw.defect_starts[k]
        )


def _defects(raw: RawWafer, notes: list[str]) -> list[Defect]:
    rows = raw.defect_rows
    if not rows:
        return []
    if "XINDEX" not in raw.defect_columns or "YINDEX" not in raw.defect_columns:
        raw.tokens.fail_at("DefectRecordSpec has no XINDEX/YINDEX columns", raw.defect_starts[0])
    columns = {name: tuple(map(itemgetter(j), rows)) for j, name in enumerate(raw.defect_columns)}
    die_x = _column_or_nan(raw, "XINDEX", columns)
    die_y = _column_or_nan(raw, "YINDEX", columns)
    _check_integers(raw, "XINDEX", die_x, INT32_MAX)
    _check_integers(raw, "YINDEX", die_y, INT32_MAX)
    ident = _column(raw, "DEFECTID", columns)
    if ident is not None:
        _check_integers(raw, "DEFECTID", ident, 2.0**63)
    n = len(rows)
    per_um = 1000.0 if raw.units_nm else 1.0  # file length units per um
    x_um = _column_or_nan(raw, "XREL", columns) / per_um
    y_um = _column_or_nan(raw, "YREL", columns) / per_um
    size = _column_or_nan(raw, "DSIZE", columns) / per_um
    klass = _column_or_nan(raw, "CLASSNUMBER", columns)
    other_names = [name for name in raw.defect_columns if name not in _MAPPED]
    other_values = [
        [unquote(t) for t in columns[name]] if '"' in "".join(columns[name]) else columns[name]
        for name in other_names
    ]
    other_rows = list(zip(*other_values, strict=True)) if other_names else [()] * n
    class_tokens = columns.get("CLASSNUMBER") if raw.class_names else None
    placed = np.flatnonzero(~np.isnan(die_x) & ~np.isnan(die_y))
    if placed.size < n:
        notes.append(f"{n - placed.size} defect(s) without XINDEX/YINDEX left out")
    xs, ys = die_x.tolist(), die_y.tolist()
    ids = ident.tolist() if ident is not None else [math.nan] * n
    xl, yl, sl = x_um.tolist(), y_um.tolist(), size.tolist()
    kl = klass.tolist()
    defects: list[Defect] = []
    with gc_paused():
        for k in placed.tolist():
            attributes = dict(zip(other_names, other_rows[k], strict=True))
            if class_tokens is not None and (label := raw.class_names.get(class_tokens[k])):
                attributes["CLASSNAME"] = label
            defects.append(
                Defect(
                    defect_id=k + 1 if math.isnan(ids[k]) else int(ids[k]),
                    die_x=int(xs[k]),
                    die_y=int(ys[k]),
                    x_um=xl[k],
                    y_um=yl[k],
                    size_um=None if math.isnan(sl[k]) else sl[k],
                    class_code=None if math.isnan(kl[k]) else int(kl[k]),
                    attributes=MappingProxyType(attributes),
                )
            )
    return defects


def _dies(raw: RawWafer, defects: list[Defect], options: ReadOptions, notes: list[str]) -> DieTable:
    plan_x = np.asarray(raw.test_plan.xs, np.int64)
    plan_y = np.asarray(raw.test_plan.ys, np.int64)
    if plan_x.size > options.max_dies:
        raise FormatError(
            f"sample test plan of {plan_x.size:,} dies exceeds the {options.max_dies:,} limit",
            format=FORMAT_NAME,
            source=raw.tokens.source,
            line=raw.line,
        )
    if raw.removed.xs:
        removed = set(zip(raw.removed.xs, raw.removed.ys, strict=True))
        keep = np.array(
            [
                (x, y) not in removed
                for x, y in zip(raw.test_plan.xs, raw.test_plan.ys, strict=True)
            ],
            bool,
        )
        plan_x, plan_y = plan_x[keep], plan_y[keep]
    if not raw.has_test_plan:
        notes.append("no SampleTestPlan: only dies with defects are listed")
    defect_x = np.fromiter((d.die_x for d in defects), np.int64, len(defects))
    defect_y = np.fromiter((d.die_y for d in defects), np.int64, len(defects))
    xy = np.stack([np.concatenate([plan_x, defect_x]), np.concatenate([plan_y, defect_y])], axis=1)
    if not xy.size:
        return DieTable.build(x=[], y=[], passed=[])
    unique, inverse = np.unique(xy, axis=0, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1)[plan_x.size :], minlength=unique.shape[0])
    return DieTable.build(x=unique[:, 0], y=unique[:, 1], passed=counts == 0, defect_count=counts)


def _timestamp(values: list[str] | None) -> datetime | None:
    if not values:
        return None
    date = values[0].strip()
    if (m := _DATE_MDY.match(date)) is not None:
        month, day, year = int(m[1]), int(m[2]), int(m[3])
        if len(m[3]) == 2:
            year += 1900 if year >= 70 else 2000
    elif (m := _DATE_YMD.match(date)) is not None:
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    else:
        return None
    hour = minute = second = 0
    if len(values) > 1 and (t := _TIME.match(values[1].strip())) is not None:
        hour, minute, second = int(t[1]), int(t[2]), int(t[3] or 0)
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _orientation(raw: RawWafer, notes: list[str]) -> Orientation:
    location = (raw.first("ORIENTATIONMARKLOCATION") or "").strip().upper()
    mark: Side | None = _SIDES.get(location)
    if mark is None and location:
        try:
            degrees = round(float(location)) % 360
        except ValueError:
            degrees = -1
        mark = _SIDE_BY_DEGREES.get(degrees)
        if mark is None:
            notes.append(f"OrientationMarkLocation {location[:40]!r} not understood")
    kind_text = (raw.first("SAMPLEORIENTATIONMARKTYPE") or "").strip().upper()
    kind = {"NOTCH": MarkKind.NOTCH, "FLAT": MarkKind.FLAT}.get(kind_text)
    return Orientation(mark=mark, mark_kind=kind, x_increases=Side.RIGHT, y_increases=Side.UP)


def _info(raw: RawWafer, n_defects: int) -> WaferInfo:
    pitch = _floats(raw, "DIEPITCH", raw.units_nm)
    width = pitch[0] if pitch and pitch[0] > 0 else None
    height = pitch[1] if pitch and len(pitch) > 1 and pitch[1] > 0 else None
    center = _floats(raw, "SAMPLECENTERLOCATION", raw.units_nm)
    center_x = center_y = None
    if center and len(center) > 1 and width and height:
        cx, cy = center[0] / width, center[1] / height
        if max(abs(cx), abs(cy)) < INT32_MAX:
            center_x, center_y = math.floor(cx), math.floor(cy)
    size = _floats(raw, "SAMPLESIZE", False)
    diameter = None
    if size:
        diameter = size[0] / 1e6 if raw.units_nm else (size[1] if len(size) > 1 else size[0])
    station = " ".join(v for v in raw.fields.get("INSPECTIONSTATIONID", []) if v.strip())
    extra = {
        key: " ".join(raw.fields[name]) for name, key in _EXTRA_FIELDS.items() if name in raw.fields
    }
    extra["length_unit"] = "nm" if raw.units_nm else "um"
    extra["defect_count"] = str(n_defects)
    if raw.summary_rows:
        extra["summary"] = "; ".join(
            " ".join(
                f"{name}={value}" for name, value in zip(raw.summary_columns, row, strict=True)
            )
            for row in raw.summary_rows[:64]
        )
    return WaferInfo(
        lot_id=raw.first("LOTID") or None,
        wafer_id=raw.first("WAFERID") or None,
        tester_id=station or None,
        program=raw.first("SETUPID") or None,
        part_type=raw.first("DEVICEID") or None,
        start_time=_timestamp(raw.fields.get("RESULTTIMESTAMP")),
        wafer_size_mm=diameter if diameter and diameter > 0 else None,
        die_width_um=width,
        die_height_um=height,
        center_x=center_x,
        center_y=center_y,
        extra=extra,
    )


def _summary_check(raw: RawWafer, n_defects: int, notes: list[str]) -> None:
    if "NDEFECT" not in raw.summary_columns:
        return
    j = raw.summary_columns.index("NDEFECT")
    try:
        declared = sum(int(float(row[j])) for row in raw.summary_rows)
    except ValueError:
        return
    if declared != n_defects:
        notes.append(f"SummaryList declares {declared} defects; the DefectList holds {n_defects}")


def build_map(raw: RawWafer, source: str, index: int, options: ReadOptions) -> WaferMap:
    """One WaferMap from a parsed KLARF wafer (see the module docstring for the mapping)."""
    notes: list[str] = list(raw.notes)
    defects = _defects(raw, notes)
    dies = _dies(raw, defects, options, notes)
    _summary_check(raw, len(raw.defect_rows), notes)
    return WaferMap(
        dies=dies,
        provenance=Provenance(source=source, format=FORMAT_NAME, wafer_index=index, line=raw.line),
        info=_info(raw, len(defects)),
        orientation=_orientation(raw, notes),
        partial=raw.partial,
        notes=tuple(notes),
        defects=tuple(defects),
    )
