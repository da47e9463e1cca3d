"""Metadata comments of CSV die lists: the ``# key: value`` lines before the header.

Keys are matched case-insensitively (blanks and hyphens count as ``_``); see
``docs/formats/csv.md`` for the list. Known keys fill :class:`WaferInfo`, the orientation, the
labels and the pass bins; ``extra.<name>`` and any other key go to ``WaferInfo.extra``. Comment
lines without a colon are ignored. The writer emits the same keys, so a written file reads back
with the same metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from waferscope.protocols.errors import FormatError, WaferMapError
from waferscope.protocols.wafermap import MarkKind, Orientation, Side, WaferInfo, WaferMap

__all__ = ["Fail", "Metadata", "metadata_lines", "parse_metadata"]

Fail = Callable[[str, int], FormatError]

FORMAT_KEY: Final = "waferscope_csv"
FORMAT_VERSION: Final = "1"

_TEXT_KEYS: Final = {
    "lot": "lot_id",
    "lot_id": "lot_id",
    "wafer": "wafer_id",
    "wafer_id": "wafer_id",
    "slot": "wafer_id",
    "tester": "tester_id",
    "tester_id": "tester_id",
    "program": "program",
    "test_program": "program",
    "part_type": "part_type",
    "product": "part_type",
    "device": "part_type",
}
_TIME_KEYS: Final = frozenset({"start_time", "end_time"})
_FLOAT_KEYS: Final = frozenset({"wafer_size_mm", "die_width_um", "die_height_um"})
_INT_KEYS: Final = frozenset({"center_x", "center_y", "grid_columns", "grid_rows"})
_ORIENTATION_KEYS: Final = {
    "mark": "mark",
    "notch": "mark",
    "mark_kind": "mark_kind",
    "x": "x_increases",
    "x_increases": "x_increases",
    "y": "y_increases",
    "y_increases": "y_increases",
}
_WRITTEN_INFO: Final = (
    ("lot", "lot_id"),
    ("wafer", "wafer_id"),
    ("tester", "tester_id"),
    ("program", "program"),
    ("part_type", "part_type"),
    ("start_time", "start_time"),
    ("end_time", "end_time"),
    ("wafer_size_mm", "wafer_size_mm"),
    ("die_width_um", "die_width_um"),
    ("die_height_um", "die_height_um"),
    ("center_x", "center_x"),
    ("center_y", "center_y"),
    ("grid_columns", "grid_columns"),
    ("grid_rows", "grid_rows"),
)


@dataclass(frozen=True, slots=True)
class Metadata:
    """What the comment lines said."""

    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    orientation: Orientation = field(default_factory=Orientation)
    labels: tuple[str, ...] = ()
    pass_bins: frozenset[int] | None = None

    def info(self, *, lot_id: str | None, wafer_id: str | None) -> WaferInfo:
        """The wafer's info; lot and wafer columns (when given) win over the comments."""
        values = dict(self.fields)
        if lot_id is not None:
            values["lot_id"] = lot_id
        if wafer_id is not None:
            values["wafer_id"] = wafer_id
        return WaferInfo(**values, extra=self.extra)


def _key(raw: str) -> str:
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def parse_metadata(comments: list[tuple[int, str]], fail: Fail) -> Metadata:
    """Read ``(line number, text after '#')`` comment lines into :class:`Metadata`."""
    fields: dict[str, Any] = {}
    extra: dict[str, str] = {}
    orientation: dict[str, str] = {}
    labels: tuple[str, ...] = ()
    pass_bins: frozenset[int] | None = None
    orientation_line = 1
    for line, text in comments:
        raw_key, sep, value = text.partition(":")
        if not sep or not raw_key.strip():
            continue
        key, value = _key(raw_key), value.strip()
        if key.startswith("extra."):
            extra[raw_key.strip()[len("extra.") :]] = value
        elif key == FORMAT_KEY:
            continue
        elif key in _TEXT_KEYS:
            fields[_TEXT_KEYS[key]] = value or None
        elif key in _TIME_KEYS:
            fields[key] = _time(value, key, line, fail)
        elif key in _FLOAT_KEYS:
            fields[key] = _positive_float(value, key, line, fail)
        elif key in _INT_KEYS:
            fields[key] = _integer(value, key, line, fail, positive=key.startswith("grid"))
        elif key == "orientation":
            orientation_line = line
            pairs = re.findall(r"([A-Za-z_]+)\s*=\s*([A-Za-z_]+)", value)
            if not pairs:
                raise fail(f"orientation {value!r}: expected mark=..., x_increases=...", line)
            for name, word in pairs:
                orientation[_orientation_key(name, line, fail)] = word.lower()
        elif key in _ORIENTATION_KEYS:
            orientation_line = line
            orientation[_ORIENTATION_KEYS[key]] = value.lower()
        elif key == "labels":
            labels = tuple(v.strip() for v in value.split(",") if v.strip())
        elif key == "pass_bins":
            pass_bins = frozenset(
                _integer(v, key, line, fail) for v in re.split(r"[,\s]+", value) if v
            )
        else:
            extra[raw_key.strip()] = value
    return Metadata(
        fields, extra, _orientation(orientation, orientation_line, fail), labels, pass_bins
    )


def _orientation_key(name: str, line: int, fail: Fail) -> str:
    key = _ORIENTATION_KEYS.get(name.lower())
    if key is None:
        raise fail(f"orientation: unknown key {name!r} (mark, mark_kind, x, y)", line)
    return key


def _orientation(values: dict[str, str], line: int, fail: Fail) -> Orientation:
    try:
        mark = values.get("mark", "none")
        kind = values.get("mark_kind", "none")
        return Orientation(
            mark=None if mark in ("none", "unknown", "") else Side(mark),
            mark_kind=None if kind in ("none", "unknown", "") else MarkKind(kind),
            x_increases=Side(values.get("x_increases", "right")),
            y_increases=Side(values.get("y_increases", "down")),
        )
    except (ValueError, WaferMapError) as exc:
        raise fail(f"orientation: {exc}", line) from None


def _time(value: str, key: str, line: int, fail: Fail) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{key} {value!r} is not an ISO 8601 date and time", line) from None


def _positive_float(value: str, key: str, line: int, fail: Fail) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise fail(f"{key} {value!r} is not a number", line) from None
    if not (number > 0 and number != float("inf")):
        raise fail(f"{key} {value!r} must be a positive number", line)
    return number


def _integer(value: str, key: str, line: int, fail: Fail, *, positive: bool = False) -> int:
    try:
        number = int(value)
    except ValueError:
        raise fail(f"{key} {value!r} is not an integer", line) from None
    if (positive and number <= 0) or abs(number) > 2**31 - 1:
        raise fail(f"{key} {value!r} is out of range", line)
    return number


# ---------------------------------------------------------------------- writing
def _common(values: Sequence[Any]) -> Any:
    """The value all wafers share, else None."""
    first = values[0] if values else None
    return first if all(v == first for v in values[1:]) else None


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def metadata_lines(maps: Sequence[WaferMap]) -> list[str]:
    """``key: value`` lines for what every wafer shares (lot and wafer go in columns when many)."""
    lines = [f"waferscope-csv: {FORMAT_VERSION}"]
    if not maps:
        return lines
    many = len(maps) > 1
    for key, attr in _WRITTEN_INFO:
        if many and key in ("lot", "wafer"):
            continue
        value = _common([getattr(m.info, attr) for m in maps])
        if value is None:
            continue
        text = (
            value.isoformat()
            if isinstance(value, datetime)
            else repr(value)
            if isinstance(value, float)
            else value
        )
        lines.append(f"{key}: {_one_line(text)}")
    orientation = _common([m.orientation for m in maps])
    if orientation is not None:
        lines.append(
            "orientation: "
            f"mark={orientation.mark.value if orientation.mark else 'none'}, "
            f"mark_kind={orientation.mark_kind.value if orientation.mark_kind else 'none'}, "
            f"x_increases={orientation.x_increases.value}, "
            f"y_increases={orientation.y_increases.value}"
        )
    labels = _common([m.labels for m in maps])
    if labels:
        lines.append(f"labels: {', '.join(_one_line(v).replace(',', ' ') for v in labels)}")
    shared = set(maps[0].info.extra)
    for m in maps[1:]:
        shared &= set(m.info.extra)
    for key in sorted(shared):
        value = _common([m.info.extra[key] for m in maps])
        if value is not None and ":" not in key and "\n" not in key:
            lines.append(f"extra.{_one_line(key)}: {_one_line(value)}")
    return lines
