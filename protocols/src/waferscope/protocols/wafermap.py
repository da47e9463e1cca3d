"""The wafer map: the one data model every format parses into and every consumer reads.

A :class:`WaferMap` is immutable. Its dies live in a column table (:class:`DieTable`) of
read-only numpy arrays so that a 250 x 265 prober map or a million-part STDF file costs arrays,
not Python objects. Coordinates are kept exactly as the source declared them; how those axes lie
on the physical wafer is described by :class:`Orientation` and undone by
:mod:`waferscope.protocols.normalize`.

Dense-array convention (the WM-811K coding): 0 = no die, 1 = pass die, 2 = fail die; row index
follows y, column index follows x, both offset so that the smallest coordinate is 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import WaferMapError

NO_DIE: Final = 0
PASS_DIE: Final = 1
FAIL_DIE: Final = 2
UNKNOWN: Final = -1

JSON_SCHEMA_VERSION: Final = 1


class Side(StrEnum):
    """A side of the wafer as seen from the front, in the picture's frame."""

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"


class MarkKind(StrEnum):
    NOTCH = "notch"
    FLAT = "flat"


@dataclass(frozen=True, slots=True)
class Orientation:
    """How the source's coordinate system lies on the wafer.

    ``mark`` is where the notch/flat lies, ``x_increases`` the direction (left/right) in which
    x grows and ``y_increases`` the direction (up/down) in which y grows, all as the source
    declared them, in one picture of the wafer seen from the front. ``None`` for ``mark`` means
    the source did not say.
    """

    mark: Side | None = None
    mark_kind: MarkKind | None = None
    x_increases: Side = Side.RIGHT
    y_increases: Side = Side.DOWN

    def __post_init__(self) -> None:
        if self.x_increases not in (Side.LEFT, Side.RIGHT):
            raise WaferMapError(f"x_increases must be left or right, got {self.x_increases!r}")
        if self.y_increases not in (Side.UP, Side.DOWN):
            raise WaferMapError(f"y_increases must be up or down, got {self.y_increases!r}")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a wafer came from: the file (as named by the caller), the reader, and the place."""

    source: str
    format: str
    wafer_index: int = 0
    offset: int | None = None
    record_index: int | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class WaferInfo:
    """Identity and geometry of one wafer. Unknown values are ``None``."""

    lot_id: str | None = None
    wafer_id: str | None = None
    tester_id: str | None = None
    program: str | None = None
    part_type: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    wafer_size_mm: float | None = None
    die_width_um: float | None = None
    die_height_um: float | None = None
    center_x: int | None = None
    center_y: int | None = None
    grid_columns: int | None = None  # declared grid size, when the source declares one
    grid_rows: int | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("wafer_size_mm", "die_width_um", "die_height_um"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise WaferMapError(f"{name} must be a positive number, got {value!r}")
        for name in ("grid_columns", "grid_rows"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise WaferMapError(f"{name} must be positive, got {value!r}")
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))


@dataclass(frozen=True, slots=True)
class Defect:
    """One inspection defect (KLARF): position in um inside its die plus the die index."""

    defect_id: int
    die_x: int
    die_y: int
    x_um: float
    y_um: float
    size_um: float | None = None
    class_code: int | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _frozen(values: npt.ArrayLike, dtype: type[np.generic], name: str, n: int | None) -> Any:
    try:
        arr = np.array(values, dtype=dtype, copy=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WaferMapError(f"die column {name!r}: {exc}") from None
    if arr.ndim != 1:
        raise WaferMapError(f"die column {name!r} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise WaferMapError(f"die column {name!r} has {arr.shape[0]} values, expected {n}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False, slots=True)
class DieTable:
    """Column table of dies. All columns have the same length; unknown values are -1."""

    x: npt.NDArray[np.int32]
    y: npt.NDArray[np.int32]
    passed: npt.NDArray[np.bool_]
    hard_bin: npt.NDArray[np.int32]
    soft_bin: npt.NDArray[np.int32]
    site: npt.NDArray[np.int16]
    head: npt.NDArray[np.int16]
    defect_count: npt.NDArray[np.int32]

    @classmethod
    def build(
        cls,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        passed: npt.ArrayLike,
        *,
        hard_bin: npt.ArrayLike | None = None,
        soft_bin: npt.ArrayLike | None = None,
        site: npt.ArrayLike | None = None,
        head: npt.ArrayLike | None = None,
        defect_count: npt.ArrayLike | None = None,
    ) -> DieTable:
        xs = _frozen(x, np.int32, "x", None)
        n = int(xs.shape[0])

        def col(v: npt.ArrayLike | None, dt: type[np.generic], name: str, fill: int) -> Any:
            return _frozen(np.full(n, fill) if v is None else v, dt, name, n)

        return cls(
            x=xs,
            y=_frozen(y, np.int32, "y", n),
            passed=_frozen(passed, np.bool_, "passed", n),
            hard_bin=col(hard_bin, np.int32, "hard_bin", UNKNOWN),
            soft_bin=col(soft_bin, np.int32, "soft_bin", UNKNOWN),
            site=col(site, np.int16, "site", UNKNOWN),
            head=col(head, np.int16, "head", UNKNOWN),
            defect_count=col(defect_count, np.int32, "defect_count", 0),
        )

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        for name in _DIE_COLUMNS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.shape[0] != n:
                raise WaferMapError(f"die column {name!r} must be a 1-D array of length {n}")
        for name in ("hard_bin", "soft_bin", "site", "head"):
            arr = getattr(self, name)
            if n and int(arr.min()) < UNKNOWN:
                raise WaferMapError(f"die column {name!r} holds a negative value other than -1")
        if n and int(self.defect_count.min()) < 0:
            raise WaferMapError("die column 'defect_count' holds a negative value")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DieTable):
            return NotImplemented
        return all(np.array_equal(getattr(self, c), getattr(other, c)) for c in _DIE_COLUMNS)

    __hash__ = None  # type: ignore[assignment]

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> DieTable:
        return DieTable(**{c: _readonly(getattr(self, c)[index]) for c in _DIE_COLUMNS})

    def to_columns(self) -> dict[str, list[int] | list[bool]]:
        return {c: getattr(self, c).tolist() for c in _DIE_COLUMNS}


_DIE_COLUMNS: Final = (
    "x",
    "y",
    "passed",
    "hard_bin",
    "soft_bin",
    "site",
    "head",
    "defect_count",
)


def _readonly(arr: Any) -> Any:
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False, slots=True)
class WaferMap:
    """One wafer: its dies, identity, orientation and where it came from.

    ``labels`` holds ground-truth pattern labels when the source carries them (datasets, hub
    exports); ``partial`` is set when the source ended before the wafer was complete; ``notes``
    are the parser's remarks (retest policy applied, fields it could not read, ...).
    """

    dies: DieTable
    provenance: Provenance
    info: WaferInfo = field(default_factory=WaferInfo)
    orientation: Orientation = field(default_factory=Orientation)
    labels: tuple[str, ...] = ()
    partial: bool = False
    notes: tuple[str, ...] = ()
    defects: tuple[Defect, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.dies, DieTable):
            raise WaferMapError("dies must be a DieTable")
        object.__setattr__(self, "labels", tuple(str(v) for v in self.labels))
        object.__setattr__(self, "notes", tuple(str(v) for v in self.notes))
        object.__setattr__(self, "defects", tuple(self.defects))

    # ----------------------------------------------------------------- summary figures
    @property
    def die_count(self) -> int:
        return len(self.dies)

    @property
    def fail_count(self) -> int:
        return int(np.count_nonzero(~self.dies.passed))

    @property
    def pass_count(self) -> int:
        return int(np.count_nonzero(self.dies.passed))

    @property
    def yield_fraction(self) -> float | None:
        return None if self.die_count == 0 else self.pass_count / self.die_count

    @property
    def extent(self) -> tuple[int, int, int, int] | None:
        """(x_min, y_min, x_max, y_max) of the dies, or None for an empty wafer."""
        if self.die_count == 0:
            return None
        d = self.dies
        return int(d.x.min()), int(d.y.min()), int(d.x.max()), int(d.y.max())

    def bin_counts(self, kind: str = "hard") -> dict[int, int]:
        col = self.dies.hard_bin if kind == "hard" else self.dies.soft_bin
        values, counts = np.unique(col, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def with_(self, **changes: Any) -> WaferMap:
        """A copy with some fields replaced (the map itself is immutable)."""
        return replace(self, **changes)

    # ----------------------------------------------------------------- dense arrays
    def to_dense(self, kind: str = "state") -> npt.NDArray[np.int32] | npt.NDArray[np.uint8]:
        """The map as a 2-D array, rows = y - y_min, columns = x - x_min.

        ``kind="state"`` gives uint8 0/1/2 (no die / pass / fail); ``"hard_bin"``,
        ``"soft_bin"`` and ``"defect_count"`` give int32 with -1 where there is no die. Where a
        coordinate appears more than once, the last die wins.
        """
        ext = self.extent
        if ext is None:
            return np.zeros((0, 0), dtype=np.uint8)
        x0, y0, x1, y1 = ext
        rows, cols = y1 - y0 + 1, x1 - x0 + 1
        r = self.dies.y - y0
        c = self.dies.x - x0
        if kind == "state":
            grid = np.zeros((rows, cols), dtype=np.uint8)
            grid[r, c] = np.where(self.dies.passed, PASS_DIE, FAIL_DIE)
            return grid
        if kind not in ("hard_bin", "soft_bin", "defect_count"):
            raise WaferMapError(f"unknown dense kind {kind!r}")
        out = np.full((rows, cols), -1, dtype=np.int32)
        out[r, c] = getattr(self.dies, kind)
        return out

    @classmethod
    def from_dense(
        cls,
        grid: npt.ArrayLike,
        *,
        provenance: Provenance,
        origin: tuple[int, int] = (0, 0),
        info: WaferInfo | None = None,
        orientation: Orientation | None = None,
        labels: Iterable[str] = (),
        hard_bins: npt.ArrayLike | None = None,
    ) -> WaferMap:
        """Build a map from a 0/1/2 array (rows = y, columns = x) placed at ``origin`` (x, y)."""
        arr = np.asarray(grid)
        if arr.ndim != 2:
            raise WaferMapError(f"a dense wafer map must be 2-D, got shape {arr.shape}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > FAIL_DIE):
            raise WaferMapError("a dense wafer map may hold only 0 (no die), 1 (pass), 2 (fail)")
        rows, cols = np.nonzero(arr)
        hb = None
        if hard_bins is not None:
            hb_arr = np.asarray(hard_bins)
            if hb_arr.shape != arr.shape:
                raise WaferMapError("hard_bins must have the same shape as the grid")
            hb = hb_arr[rows, cols]
        dies = DieTable.build(
            x=cols + origin[0],
            y=rows + origin[1],
            passed=arr[rows, cols] == PASS_DIE,
            hard_bin=hb,
        )
        return cls(
            dies=dies,
            provenance=provenance,
            info=info or WaferInfo(),
            orientation=orientation or Orientation(),
            labels=tuple(labels),
        )

    # ----------------------------------------------------------------- JSON
    def identity_dict(self) -> dict[str, Any]:
        """Where the wafer came from and which wafer it is (the head of every summary)."""
        return {
            "source": self.provenance.source,
            "format": self.provenance.format,
            "index": self.provenance.wafer_index,
            "lot_id": self.info.lot_id,
            "wafer_id": self.info.wafer_id,
            "tester_id": self.info.tester_id,
        }

    def to_json_dict(self) -> dict[str, Any]:
        info = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in _dataclass_items(self.info)
            if k != "extra"
        }
        info["extra"] = dict(self.info.extra)
        return {
            "schema": JSON_SCHEMA_VERSION,
            "provenance": dict(_dataclass_items(self.provenance)),
            "info": info,
            "orientation": {
                "mark": None if self.orientation.mark is None else str(self.orientation.mark),
                "mark_kind": (
                    None if self.orientation.mark_kind is None else str(self.orientation.mark_kind)
                ),
                "x_increases": str(self.orientation.x_increases),
                "y_increases": str(self.orientation.y_increases),
            },
            "labels": list(self.labels),
            "partial": self.partial,
            "notes": list(self.notes),
            "dies": self.dies.to_columns(),
            "defects": [
                {**dict(_dataclass_items(d)), "attributes": dict(d.attributes)}
                for d in self.defects
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), separators=(",", ":"))

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any]) -> WaferMap:
        try:
            if doc.get("schema") != JSON_SCHEMA_VERSION:
                raise WaferMapError(f"unsupported WaferMap JSON schema {doc.get('schema')!r}")
            info = dict(doc["info"])
            for key in ("start_time", "end_time"):
                if info.get(key) is not None:
                    info[key] = datetime.fromisoformat(info[key])
            o = doc["orientation"]
            dies = doc["dies"]
            return cls(
                dies=DieTable.build(
                    x=dies["x"],
                    y=dies["y"],
                    passed=dies["passed"],
                    hard_bin=dies.get("hard_bin"),
                    soft_bin=dies.get("soft_bin"),
                    site=dies.get("site"),
                    head=dies.get("head"),
                    defect_count=dies.get("defect_count"),
                ),
                provenance=Provenance(**doc["provenance"]),
                info=WaferInfo(**info),
                orientation=Orientation(
                    mark=None if o.get("mark") is None else Side(o["mark"]),
                    mark_kind=None if o.get("mark_kind") is None else MarkKind(o["mark_kind"]),
                    x_increases=Side(o["x_increases"]),
                    y_increases=Side(o["y_increases"]),
                ),
                labels=tuple(doc.get("labels", ())),
                partial=bool(doc.get("partial", False)),
                notes=tuple(doc.get("notes", ())),
                defects=tuple(Defect(**d) for d in doc.get("defects", ())),
            )
        except WaferMapError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise WaferMapError(f"malformed WaferMap JSON: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> WaferMap:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WaferMapError(f"WaferMap JSON is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise WaferMapError("WaferMap JSON must be an object")
        return cls.from_json_dict(doc)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WaferMap):
            return NotImplemented
        return (
            self.dies == other.dies
            and self.provenance == other.provenance
            and self.info == other.info
            and self.orientation == other.orientation
            and self.labels == other.labels
            and self.partial == other.partial
            and self.notes == other.notes
            and self.defects == other.defects
        )

    __hash__ = None  # type: ignore[assignment]


def _dataclass_items(obj: Any) -> Iterable[tuple[str, Any]]:
    for name in obj.__slots__:
        yield name, getattr(obj, name)
