"""``waferscope simulate-tester``: the tester simulator on the command line."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from waferscope.protocols.errors import SimulatorError

if TYPE_CHECKING:
    from waferscope.protocols.simulator.engine import SimulatorStats, WrittenFile

_TTY_EVERY_S = 1.0
_LOG_EVERY_S = 10.0


def _per_output(values: list[str], n: int, option: str) -> list[str | None]:
    """One value per output: none given, one for all, or exactly one each."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return [values[0]] * n
    if len(values) != n:
        raise SimulatorError(
            f"give it once (for every output) or once per --out ({n}), not {len(values)} times",
            where=option,
        )
    return [*values]


class _Progress:
    """Progress on stderr: a line rewritten in place on a terminal, a line now and then in a log."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = _TTY_EVERY_S if self.tty else _LOG_EVERY_S
        self.next = time.monotonic() + self.every

    def file(self, written: WrittenFile, stats: SimulatorStats) -> None:
        now = time.monotonic()
        if self.quiet or now < self.next:
            return
        self.next = now + self.every
        line = f"simulate-tester: {stats.written:,} wafers written, {stats.rate:.2f}/s"
        if self.tty:
            sys.stderr.write(f"\r{line}  ")
        else:
            sys.stderr.write(f"{line}, last {written.path}\n")
        sys.stderr.flush()

    def done(self, stats: SimulatorStats, folders: int) -> None:
        if self.quiet:
            return
        lag = f", fell behind by up to {stats.max_lag_s:.2f} s" if stats.max_lag_s > 0.5 else ""
        sys.stderr.write(
            ("\r" if self.tty else "")
            + f"simulate-tester: {stats.written:,} wafers ({stats.bytes_written:,} bytes) "
            f"into {folders} folder{'s' if folders != 1 else ''} in {stats.elapsed_s:.1f} s "
            f"({stats.rate:.2f}/s{lag}); ended by {stats.stopped_by}\n"
        )


def simulate_tester(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="WM-811K / MixedWM38 .npz files, tester files (any format waferscope reads), "
            "or folders of them."
        ),
    ],
    out: Annotated[
        list[Path],
        typer.Option(
            "--out", "-o", help="A hot folder to fill; repeat for several simulated testers."
        ),
    ],
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            help="Format written: stdf, tsk, e142, csv or mixed (round-robin). Once for all "
            "outputs or once per --out. Default: stdf.",
        ),
    ] = None,
    tester: Annotated[
        list[str] | None,
        typer.Option("--tester", help="Tester id, once per --out (default SIM-T01, SIM-T02, ...)."),
    ] = None,
    rate: Annotated[
        float,
        typer.Option("--rate", "-r", help="Wafers per second over all outputs (may be < 1)."),
    ] = 1.0,
    burst: Annotated[
        bool, typer.Option("--burst", help="As fast as possible (ignores --rate).")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-n", help="Stop after this many wafers.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    loop: Annotated[
        bool, typer.Option("--loop", help="Start over when the selection is used up.")
    ] = False,
    pattern: Annotated[
        list[str] | None,
        typer.Option("--pattern", "-p", help="Only wafers labelled so (repeatable), e.g. Scratch."),
    ] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle", help="Random order.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --shuffle.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Use only the first N selected wafers.")
    ] = None,
    gzip: Annotated[bool, typer.Option("--gzip", help="gzip every file (.gz).")] = False,
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", help="Append one JSON line per written file to this file."),
    ] = None,
    lot_prefix: Annotated[
        str | None, typer.Option("--lot-prefix", help="Start of every lot id.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> int:
    """Replay real wafer maps as tester files into hot folders, at a steady rate.

    Files appear atomically (written as a hidden '.<name>.part', then renamed), one wafer each,
    with fresh lot, wafer and tester ids. Ctrl-C ends the run cleanly.
    """
    from waferscope.protocols.simulator.delivery import Output
    from waferscope.protocols.simulator.engine import TesterSimulator

    formats = _per_output(list(to or []), len(out), "--to")
    testers = _per_output(list(tester or []), len(out), "--tester")
    outputs = [
        Output(folder, fmt or "stdf", tid, gzip)
        for folder, fmt, tid in zip(out, formats, testers, strict=True)
    ]
    sim = TesterSimulator(
        sources,
        outputs,
        rate=None if burst else rate,
        count=count,
        duration_s=duration,
        loop=loop,
        patterns=list(pattern or []),
        shuffle=shuffle,
        seed=seed,
        limit=limit,
        manifest=manifest,
        lot_prefix=lot_prefix,
    )
    progress = _Progress(quiet)
    if sim.skipped and not quiet:
        print(
            f"simulate-tester: left out {len(sim.skipped)} file(s) no reader recognises, "
            f"e.g. {sim.skipped[0]}",
            file=sys.stderr,
        )
    # Ctrl-C ends the run cleanly (no partial file is left behind): report what was done.
    with contextlib.suppress(KeyboardInterrupt):
        sim.run(on_file=lambda written: progress.file(written, sim.stats))
    progress.done(sim.stats, len({o.folder for o in outputs}))
    return 0
