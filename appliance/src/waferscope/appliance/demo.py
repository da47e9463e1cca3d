"""``waferscope demo``: the whole appliance on this machine, fed by a tester simulator.

Starts a private broker, the hub (SQLite) and N edge agents (appliance.launcher), then replays
real wafer maps as tester files into the edges' hot folders (protocols.simulator), prints the
URLs, a reviewer login and a progress line, and stops everything cleanly on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from waferscope.appliance.launcher import Appliance, ApplianceOptions
from waferscope.appliance.processes import ApplianceError
from waferscope.appliance.progress import read_progress
from waferscope.protocols.simulator import Output, TesterSimulator


@dataclass
class DemoOptions:
    workdir: Path = Path("waferscope-demo")
    sources: list[Path] = field(default_factory=list)  # empty: the WM-811K validation maps
    edges: int = 2
    rate: float | None = 2.0  # wafers per second over all testers; None: as fast as possible
    count: int | None = None
    duration_s: float | None = None
    fmt: str = "mixed"
    patterns: list[str] = field(default_factory=list)
    seed: int = 0
    fresh: bool = False
    simulate: bool = True
    hub_port: int | None = None
    edge_port: int | None = None
    progress_every_s: float = 2.0
    bundle: Path | None = None


def default_sources() -> list[Path]:
    """The WM-811K validation maps of $WAFER_DATA_DIR, else of ../shared/data; ApplianceError
    saying how to point the demo at data when neither has them."""
    env = os.environ.get("WAFER_DATA_DIR")
    roots = [Path(env)] if env else [Path.cwd().parent / "shared" / "data", Path("data")]
    for root in roots:
        candidate = root / "wm811k" / "val.npz"
        if candidate.is_file():
            return [candidate]
    raise ApplianceError(
        "no wafer maps to replay: pass --data FILE_OR_FOLDER (WM-811K/MixedWM38 .npz or tester "
        "files), set WAFER_DATA_DIR, or run with --no-simulator and drop files yourself"
    )


class _Stop:
    """Set by SIGINT/SIGTERM; a second Ctrl-C while stopping is ignored (stopping is bounded)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.event.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


class _Console:
    """The launcher's output. When it goes away (``| head`` ended, ``| tee`` killed by Ctrl-C)
    printing must not end the launcher before it stops its children: the first failed write
    marks the output gone, asks the demo to stop, and later lines are dropped."""

    def __init__(self, out: TextIO, stop: threading.Event) -> None:
        self.out = out
        self.stop = stop
        self.gone = False

    def say(self, text: str = "") -> None:
        if self.gone:
            return
        try:
            print(text, file=self.out, flush=True)
        except (BrokenPipeError, OSError, ValueError):  # ValueError: a closed file
            self.gone = True
            self.stop.set()


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout) -> int:
    stop = _Stop()
    console = _Console(out, stop.event)
    say = console.say

    sources = opts.sources or default_sources()
    edge_ports = [opts.edge_port + i for i in range(opts.edges)] if opts.edge_port else []
    appliance = Appliance(
        opts.workdir,
        ApplianceOptions(
            edges=opts.edges, hub_port=opts.hub_port, edge_ports=edge_ports, bundle=opts.bundle
        ),
    )
    layout = appliance.layout
    if layout.exists():
        if opts.fresh:
            say(f"starting over: removing the previous run's state in {layout.root}")
            layout.clean()
            appliance = Appliance(opts.workdir, appliance.options)
            layout = appliance.layout
        else:
            say(f"reusing the previous run's state in {layout.root} (--fresh starts over)")
    # the simulator checks its sources and formats before anything starts
    stop.install()
    layout.make_folders()
    simulator = None
    if opts.simulate:
        simulator = TesterSimulator(
            [str(s) for s in sources],
            [Output(e.hot_folder, opts.fmt, e.tester_id) for e in layout.edges],
            rate=opts.rate,
            count=opts.count,
            duration_s=opts.duration_s,
            loop=True,
            patterns=opts.patterns,
            shuffle=True,
            seed=opts.seed,
            manifest=layout.root / "simulator-manifest.jsonl",
        )
    say(f"starting the appliance in {layout.root} ...")
    appliance.prepare()
    appliance.start()  # stops what it started when it fails
    try:
        return _serve(opts, appliance, simulator, stop, console)
    finally:
        appliance.stop()  # on every exit path, before anything else can fail (idempotent)


def _serve(
    opts: DemoOptions,
    appliance: Appliance,
    simulator: TesterSimulator | None,
    stop: _Stop,
    console: _Console,
) -> int:
    """Print the addresses, run the simulator and the progress line until asked to stop."""
    say = console.say
    layout = appliance.layout
    user, password = appliance.reviewer_login
    say("")
    say(f"  hub (reviewer UI):  {appliance.hub_url}/    login: {user} / {password}")
    for edge in appliance.edges:
        say(
            f"  edge {edge.layout.device_id} panel:  {edge.url}/    "
            f"hot folder: {edge.layout.hot_folder}"
        )
    say(f"  broker:             mqtt://127.0.0.1:{appliance.broker_port}")
    say(f"  logs:               {layout.logs_dir}")
    say("")
    if simulator is not None:
        pace = "as fast as possible" if opts.rate is None else f"{opts.rate:g} wafers/s"
        say(f"tester simulator: {len(simulator.selection)} maps, {opts.fmt} files, {pace}")
    else:
        say("no simulator: drop tester files into the hot folders above")
    say("press Ctrl-C to stop everything\n")

    worker = None
    if simulator is not None:
        worker = threading.Thread(
            target=simulator.run, args=(stop.event,), name="tester-simulator", daemon=True
        )
        worker.start()
    code = 0
    edges = [(e.layout.device_id, e.url) for e in appliance.edges]
    try:
        next_line = time.monotonic()
        last_line, last_said = "", 0.0
        while not stop.event.wait(0.2):
            dead = appliance.crashed()
            if dead:
                say(f"\nstopping: {', '.join(dead)} exited unexpectedly (see {layout.logs_dir})")
                code = 1
                break
            if console.gone:
                code = 1  # nobody reads us any more: stop like a pipeline program on SIGPIPE
                break
            if time.monotonic() >= next_line:
                next_line += opts.progress_every_s
                sent = simulator.stats.written if simulator is not None else None
                line = read_progress(appliance.hub_url, edges).line(sent)
                if line != last_line or time.monotonic() - last_said > 60:
                    say(line)  # only what changed, and a sign of life once a minute
                    last_line, last_said = line, time.monotonic()
            if worker is not None and not worker.is_alive() and simulator is not None:
                worker = None
                stats = simulator.stats
                say(
                    f"the simulator finished: {stats.written} wafers in {stats.elapsed_s:.0f} s "
                    f"({stats.stopped_by}); the appliance keeps running until Ctrl-C"
                )
    finally:
        stop.event.set()
        say("\nstopping: simulator, edges (draining their outboxes), hub, broker ...")
        if worker is not None:
            worker.join(timeout=10)
        try:
            final = read_progress(appliance.hub_url, edges).line()
        finally:
            appliance.stop()
        say(final)
        say(f"state kept in {layout.root}: run again to continue, or with --fresh to start over")
    return code
