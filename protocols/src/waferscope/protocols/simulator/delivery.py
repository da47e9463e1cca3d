"""Turning a source wafer into a tester file and delivering it atomically into a hot folder.

**Identity.** Every written wafer gets fresh ids, as a tester gives them: a lot id (a new lot
after 25 wafers of one output), the wafer number 1..25 in that lot as its wafer id (two digits)
and slot, the output's tester id, and start/finish times ending now (local wall clock, as
testers write it). So two files never hold the same bytes, even when one map is replayed twice.

**Dies.** Coordinates, pass/fail and known bins are kept as read. Unknown bins (WM-811K and
MixedWM38 maps have none; KLARF maps neither) become hard and soft bin 1 for a passing die and 2
for a failing one, so every writer has bins to write. A wafer whose notch/flat side is unknown
(every dataset map) gets the notch down, x growing right and y growing down. Ground-truth labels
are not written into the file (a tester does not know them); the manifest carries them.

**Delivery.** The file is written under a temporary name in the target folder,
``.<name>.part``, and renamed into place with :func:`os.replace`, so no reader ever sees a
partial file under its final name. The edge's hot folder never takes dot-files (a fixed rule)
nor, by default, names ending in ``.part``; the name satisfies both, so it stays invisible even
where an operator has changed ``ignore_suffixes``. The rename is within one folder, hence one
file system, hence atomic; the edge sees it as a rename-in and takes the file at once.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from waferscope.protocols.errors import SimulatorError
from waferscope.protocols.formats import WaferWriter, get_writer, list_formats
from waferscope.protocols.wafermap import DieTable, MarkKind, Orientation, Side, WaferMap

__all__ = [
    "MIXED",
    "WAFERS_PER_LOT",
    "Output",
    "deliver",
    "dress",
    "file_extension",
    "temporary_name",
    "writable_formats",
    "writer_for",
]

MIXED: Final = "mixed"  # an output whose files cycle through every writable format
WAFERS_PER_LOT: Final = 25
PASS_BIN: Final = 1
FAIL_BIN: Final = 2
_EXTENSIONS: Final = {"stdf": ".stdf", "tsk": ".tsk", "e142": ".xml", "csv": ".csv"}
_SECONDS_PER_DIE: Final = 0.02  # a plausible test time for the start time of a wafer
_DEFAULT_ORIENTATION: Final = Orientation(
    mark=Side.DOWN, mark_kind=MarkKind.NOTCH, x_increases=Side.RIGHT, y_increases=Side.DOWN
)


def writable_formats() -> tuple[str, ...]:
    """The formats the simulator can write (every registered format with a writer), in
    registry order; an :class:`Output` may also ask for :data:`MIXED`."""
    return tuple(
        f.name for f in list_formats() if isinstance(f, WaferWriter) and hasattr(f, "write")
    )


def writer_for(name: str) -> WaferWriter:
    """The writer of a format, or :class:`SimulatorError` naming the formats there are."""
    if name not in writable_formats():
        known = ", ".join((*writable_formats(), MIXED))
        raise SimulatorError(f"cannot write format {name!r} (choose from: {known})", where="format")
    return get_writer(name)


def file_extension(fmt: str) -> str:
    return _EXTENSIONS.get(fmt, f".{fmt}")


@dataclass(frozen=True, slots=True)
class Output:
    """One simulated tester: the hot folder it drops files into and what it writes.

    ``format`` is a name from :func:`writable_formats` or ``"mixed"`` (round-robin over all of
    them, one file each). ``tester_id`` defaults to ``SIM-T01``, ``SIM-T02``, ... by position.
    ``gzip`` compresses each file (name ending ``.gz``; every reader takes gzip directly).
    """

    folder: Path
    format: str = "stdf"
    tester_id: str | None = None
    gzip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))


def dress(
    wafer: WaferMap, *, lot_id: str, wafer_number: int, tester_id: str, now: datetime
) -> WaferMap:
    """The wafer as a tester would write it now (ids, times, bins, orientation; see above)."""
    d = wafer.dies
    passed = d.passed
    default = np.where(passed, PASS_BIN, FAIL_BIN).astype(np.int32)
    hard = np.where(d.hard_bin < 0, default, d.hard_bin)
    soft = np.where(d.soft_bin < 0, hard, d.soft_bin)
    dies = DieTable.build(
        d.x,
        d.y,
        passed,
        hard_bin=hard,
        soft_bin=soft,
        site=d.site,
        head=d.head,
        defect_count=d.defect_count,
    )
    start = now - timedelta(seconds=max(1, round(len(d) * _SECONDS_PER_DIE)))
    info = replace(
        wafer.info,
        lot_id=lot_id,
        wafer_id=f"{wafer_number:02d}",
        tester_id=tester_id,
        start_time=start,
        end_time=now,
        extra={**wafer.info.extra, "slot": str(wafer_number)},
    )
    orientation = wafer.orientation if wafer.orientation.mark else _DEFAULT_ORIENTATION
    return wafer.with_(dies=dies, info=info, orientation=orientation, labels=(), notes=())


def encode(wafer: WaferMap, fmt: str, *, compress: bool) -> bytes:
    """The file's bytes: one wafer in ``fmt``, gzip-compressed when asked."""
    buffer = io.BytesIO()
    writer_for(fmt).write([wafer], buffer)
    data = buffer.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def temporary_name(final_name: str) -> str:
    """The name a file is written under before it is renamed to ``final_name``."""
    return f".{final_name}.part"


def deliver(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder/name`` atomically (see the module docstring); returns the
    path. When that name is taken, ``~2``, ``~3``, ... is added before the extension."""
    final = folder / name
    stem, dot, ext = name.partition(".")
    n = 1
    while final.exists():
        n += 1
        final = folder / f"{stem}~{n}{dot}{ext}"
    tmp = folder / temporary_name(final.name)
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SimulatorError(f"cannot write: {exc.strerror or exc}", where=str(final)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def check_folder(folder: Path) -> None:
    """Create the folder if needed and prove it takes files (a dot-file probe, removed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / temporary_name(f"probe-{os.getpid()}")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SimulatorError(
            f"output folder is not writable: {exc.strerror or exc}", where=str(folder)
        ) from None
