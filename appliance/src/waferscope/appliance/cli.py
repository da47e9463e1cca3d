"""``waferscope demo``: registered in the umbrella CLI through the ``waferscope.commands``
entry points (appliance/pyproject.toml)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def demo(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="Wafer maps to replay: WM-811K/MixedWM38 .npz, tester files or folders "
            "(repeatable). Default: the WM-811K validation maps of $WAFER_DATA_DIR or "
            "../shared/data.",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Wafers per second over all testers (0: as fast as possible).")
    ] = 2.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop the simulator after this many wafers.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=1, help="Stop the simulator after this many seconds.")
    ] = None,
    edges: Annotated[int, typer.Option(min=1, max=16, help="Edge agents (testers).")] = 2,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="File format the testers write: stdf, tsk, e142, csv or mixed."
        ),
    ] = "mixed",
    pattern: Annotated[
        list[str] | None,
        typer.Option("--pattern", help="Replay only maps with this label (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Order of the replayed maps.")] = 0,
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where the appliance keeps its state.")
    ] = Path("waferscope-demo"),
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh/--reuse",
            help="Remove the previous run's state first, or keep it (results, login, ports).",
        ),
    ] = False,
    simulate: Annotated[
        bool,
        typer.Option("--simulate/--no-simulator", help="Feed the hot folders with the simulator."),
    ] = True,
    hub_port: Annotated[
        int | None, typer.Option(help="Hub web port (default: the last run's, else 8400).")
    ] = None,
    edge_port: Annotated[
        int | None, typer.Option(help="First edge panel port (default: 8401, 8402, ...).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Engine bundle (default: the shipped one).")
    ] = None,
) -> None:
    """Run the whole appliance here: broker, hub, edge agents and a tester simulator."""
    from waferscope.appliance.demo import DemoOptions, run_demo
    from waferscope.protocols.errors import WaferscopeError

    options = DemoOptions(
        workdir=workdir,
        sources=list(data or []),
        edges=edges,
        rate=rate if rate > 0 else None,
        count=count,
        duration_s=duration,
        fmt=fmt,
        patterns=list(pattern or []),
        seed=seed,
        fresh=fresh,
        simulate=simulate,
        hub_port=hub_port,
        edge_port=edge_port,
        bundle=model,
    )
    try:
        code = run_demo(options)
    except WaferscopeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
