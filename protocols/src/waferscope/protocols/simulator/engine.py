"""The tester simulator: replays selected wafers into hot folders at a steady rate.

Wafer *i* of a run (counting from 0 over every output) goes to output ``i % len(outputs)`` and
is due ``i / rate`` seconds after the run started, measured on a monotonic clock. Waiting is
always until the next due time, never "sleep one period", so time spent writing does not add
up: the run does not drift, and after a stall it catches up (``SimulatorStats.max_lag_s`` says
how far it fell behind). ``rate=None`` writes as fast as it can (burst).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from waferscope.protocols.errors import SimulatorError
from waferscope.protocols.simulator.delivery import (
    MIXED,
    WAFERS_PER_LOT,
    Output,
    check_folder,
    deliver,
    dress,
    encode,
    file_extension,
    writable_formats,
    writer_for,
)
from waferscope.protocols.simulator.sources import Selection, load_selection

__all__ = ["SimulatorStats", "TesterSimulator", "WrittenFile"]

_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_TESTER_ID: Final = 12  # the TSK header's tester (machine) field
_MAX_LOT_PREFIX: Final = 14  # + "-NNN" fits the TSK header's 18-character lot field


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """One file the simulator put in place (one line of the manifest)."""

    path: Path
    format: str
    lot_id: str
    wafer_id: str
    tester_id: str
    output: int  # index into the simulator's outputs
    labels: tuple[str, ...]  # the source's ground truth, when it has one
    source: str
    source_index: int
    size: int  # bytes on disk
    written_at: datetime  # UTC wall clock, once the file was in place
    due_s: float | None  # when the schedule wanted it, seconds after the start (None: burst)
    elapsed_s: float  # when it was in place, seconds after the start (monotonic clock)

    def to_json_dict(self) -> dict[str, Any]:
        """The manifest line: path, format, lot, wafer, tester, label(s), source, written_at."""
        return {
            "path": str(self.path),
            "format": self.format,
            "lot": self.lot_id,
            "wafer": self.wafer_id,
            "tester": self.tester_id,
            "label": "+".join(self.labels) if self.labels else None,
            "labels": list(self.labels),
            "source": self.source,
            "source_index": self.source_index,
            "size": self.size,
            "written_at": self.written_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SimulatorStats:
    """What a run did. ``stopped_by``: ``"count"``, ``"duration"``, ``"end"`` (the selection
    was used up), ``"stop"`` (the stop event, or the caller closed the iterator), ``"error"``,
    or ``"running"`` while a run is in progress."""

    written: int = 0
    bytes_written: int = 0
    elapsed_s: float = 0.0
    per_output: tuple[int, ...] = ()
    max_lag_s: float = 0.0
    stopped_by: str = "running"

    @property
    def rate(self) -> float:
        """Wafers per second over the run so far."""
        return self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class _Lot:
    lot_id: str = ""
    wafers: int = WAFERS_PER_LOT  # wafers written in the current lot; full: start a new one


@dataclass(slots=True)
class _Run:
    counts: list[int]  # files written per output
    lots: list[_Lot]  # each output's current lot
    mixed_turn: list[int]  # each output's next format when it writes "mixed"
    formats: tuple[str, ...]  # what "mixed" cycles through
    written: int = 0
    size: int = 0
    lag: float = 0.0
    lot_seq: int = 0
    finished: str = "running"


class TesterSimulator:
    """Replays real wafer maps as tester files into one or more hot folders.

    ``sources``: WM-811K / MixedWM38 ``.npz`` files, tester files, or folders of them (see
    :mod:`.sources`). ``outputs``: one :class:`Output` per simulated tester. ``rate``: wafers per
    second over all outputs together (may be below 1), ``None`` for burst. The run ends after
    ``count`` wafers, after ``duration_s`` seconds, when the selection is used up (unless
    ``loop``: then it starts over, reshuffled when ``shuffle``), or when ``stop`` is set.
    ``patterns``/``limit`` choose the wafers (:func:`.sources.load_selection`); ``shuffle`` with
    ``seed`` orders them reproducibly. ``manifest`` appends one JSON line per written file.
    ``lot_prefix`` starts every lot id (default: ``SIM`` and the start time, month to second).
    ``clock`` and ``sleep`` are for tests (a monotonic clock in seconds, and a sleep).

    Everything is checked here, before any file is written: bad arguments, sources, formats
    and folders raise :class:`~waferscope.protocols.errors.SimulatorError` (a source with
    corrupt content raises the reader's ``FormatError``); both are ``WaferscopeError``.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        outputs: Sequence[Output],
        *,
        rate: float | None = 1.0,
        count: int | None = None,
        duration_s: float | None = None,
        loop: bool = False,
        patterns: Sequence[str] = (),
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        manifest: str | os.PathLike[str] | None = None,
        lot_prefix: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        _check_positive("rate", rate)
        _check_positive("duration", duration_s)
        if count is not None and count < 1:
            raise SimulatorError(f"must be at least 1, got {count}", where="count")
        if not outputs:
            raise SimulatorError("at least one output folder is needed", where="outputs")
        self.outputs: tuple[Output, ...] = tuple(
            o if o.tester_id else Output(o.folder, o.format, f"SIM-T{k + 1:02d}", o.gzip)
            for k, o in enumerate(outputs)
        )
        for out in self.outputs:
            if out.format != MIXED:
                writer_for(out.format)
            _check_id(out.tester_id or "", "tester id", _MAX_TESTER_ID)
        if lot_prefix is not None:
            _check_id(lot_prefix, "lot prefix", _MAX_LOT_PREFIX)
        self.rate, self.count, self.duration_s, self.loop = rate, count, duration_s, loop
        self.shuffle, self.seed = shuffle, seed
        self.lot_prefix = lot_prefix
        self.manifest = Path(manifest) if manifest is not None else None
        self._clock = clock
        self._sleep = sleep
        self.selection: Selection = load_selection(sources, patterns=patterns, limit=limit)
        for out in self.outputs:
            check_folder(out.folder)
        if self.manifest is not None:
            check_folder(self.manifest.parent)
        self._stats = SimulatorStats(per_output=(0,) * len(self.outputs))

    # ------------------------------------------------------------------ public
    @property
    def skipped(self) -> tuple[str, ...]:
        """Files in source folders that no reader recognises (left out)."""
        return self.selection.skipped

    @property
    def stats(self) -> SimulatorStats:
        """The current run's figures (the last run's once it ended)."""
        return self._stats

    def run(
        self,
        stop: threading.Event | None = None,
        on_file: Callable[[WrittenFile], object] | None = None,
    ) -> SimulatorStats:
        """Write until a limit is reached or ``stop`` is set; ``on_file`` sees each file."""
        for written in self.files(stop):
            if on_file is not None:
                on_file(written)
        return self._stats

    def __iter__(self) -> Iterator[WrittenFile]:
        return self.files()

    def files(self, stop: threading.Event | None = None) -> Iterator[WrittenFile]:
        """The run as an iterator: yields each file once it is in place (paced by the rate)."""
        t0 = self._clock()
        prefix = self.lot_prefix or f"SIM{datetime.now():%m%d%H%M%S}"
        n = len(self.outputs)
        run = _Run([0] * n, [_Lot() for _ in range(n)], [0] * n, writable_formats())
        self._update(run, t0)
        manifest = self.manifest.open("a", encoding="utf-8") if self.manifest else None
        plan = self._plan()
        try:
            while run.finished == "running":
                written = self._next(run, plan, prefix, t0, stop)
                if written is None:
                    break
                if manifest is not None:
                    manifest.write(json.dumps(written.to_json_dict()) + "\n")
                    manifest.flush()
                self._update(run, t0)
                yield written
        except (GeneratorExit, KeyboardInterrupt):
            run.finished = "stop"  # the caller closed the iterator, or Ctrl-C
            raise
        except BaseException:
            run.finished = "error"
            raise
        finally:
            if manifest is not None:
                manifest.close()
            self._update(run, t0)

    # ------------------------------------------------------------------ internals
    def _plan(self) -> Iterator[int | None]:
        """Selection positions in replay order, forever when looping; None at the end."""
        rng = np.random.default_rng(self.seed) if self.shuffle else None
        while True:
            yield from self.selection.order(rng)
            if not self.loop:
                yield None
                return

    def _next(
        self,
        run: _Run,
        plan: Iterator[int | None],
        prefix: str,
        t0: float,
        stop: threading.Event | None,
    ) -> WrittenFile | None:
        """Wait for the next wafer's turn and write it; None (with the reason set) at the end."""
        i = run.written
        if self.count is not None and i >= self.count:
            run.finished = "count"
            return None
        position = next(plan)
        if position is None:
            run.finished = "end"
            return None
        due = None if self.rate is None else i / self.rate
        now = self._clock() - t0
        if self.duration_s is not None and (now if due is None else due) >= self.duration_s:
            run.finished = "duration"
            return None
        if (due is not None and self._wait_until(t0 + due, stop)) or (
            stop is not None and stop.is_set()
        ):
            run.finished = "stop"
            return None
        return self._write_one(run, i % len(self.outputs), position, prefix, due, t0)

    def _wait_until(self, deadline: float, stop: threading.Event | None) -> bool:
        """Wait for the monotonic ``deadline``; True when ``stop`` was set meanwhile."""
        while (remaining := deadline - self._clock()) > 0:
            if self._sleep is not None:
                self._sleep(remaining)
            elif stop is not None:
                if stop.wait(remaining):
                    return True
            else:
                time.sleep(remaining)
            if stop is not None and stop.is_set():
                return True
        return False

    def _write_one(
        self, run: _Run, k: int, position: int, prefix: str, due: float | None, t0: float
    ) -> WrittenFile:
        out = self.outputs[k]
        fmt = out.format
        if fmt == MIXED:
            fmt = run.formats[run.mixed_turn[k] % len(run.formats)]
            run.mixed_turn[k] += 1
        lot = run.lots[k]
        if lot.wafers >= WAFERS_PER_LOT:
            run.lot_seq += 1
            lot.lot_id, lot.wafers = f"{prefix}-{run.lot_seq:03d}", 0
        lot.wafers += 1
        picked = self.selection.get(position)
        tester_id = out.tester_id or ""
        wafer = dress(
            picked.wafer,
            lot_id=lot.lot_id,
            wafer_number=lot.wafers,
            tester_id=tester_id,
            now=datetime.now().replace(microsecond=0),
        )
        data = encode(wafer, fmt, compress=out.gzip)
        name = f"{lot.lot_id}_{lot.wafers:02d}{file_extension(fmt)}" + (".gz" if out.gzip else "")
        path = deliver(out.folder, name, data)
        run.counts[k] += 1
        run.written += 1
        run.size += len(data)
        elapsed = self._clock() - t0
        if due is not None:
            run.lag = max(run.lag, elapsed - due)
        return WrittenFile(
            path=path,
            format=fmt,
            lot_id=lot.lot_id,
            wafer_id=wafer.info.wafer_id or "",
            tester_id=tester_id,
            output=k,
            labels=picked.labels,
            source=picked.source,
            source_index=picked.index,
            size=len(data),
            written_at=datetime.now(UTC),
            due_s=due,
            elapsed_s=elapsed,
        )

    def _update(self, run: _Run, t0: float) -> None:
        self._stats = SimulatorStats(
            written=run.written,
            bytes_written=run.size,
            elapsed_s=self._clock() - t0,
            per_output=tuple(run.counts),
            max_lag_s=max(run.lag, 0.0),
            stopped_by=run.finished,
        )


def _check_positive(what: str, value: float | None) -> None:
    if value is not None and not (value > 0 and value != float("inf")):
        raise SimulatorError(f"must be a positive number, got {value}", where=what)


def _check_id(value: str, what: str, longest: int) -> None:
    if not _ID.fullmatch(value) or len(value) > longest:
        raise SimulatorError(
            f"{value!r} is not a valid {what}: 1 to {longest} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            where=what,
        )
