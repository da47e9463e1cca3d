"""`waferscope inspect`, `convert`, `formats` and `simulate-tester`: the protocols part's
commands."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.formats import ReadOptions, RetestPolicy, get_writer, list_formats
from waferscope.protocols.formats import read_maps as _read_maps
from waferscope.protocols.quality import QualityReport, check
from waferscope.protocols.release.cli import register as register_release
from waferscope.protocols.simulator.cli import simulate_tester
from waferscope.protocols.wafermap import WaferMap


class Target(StrEnum):
    CSV = "csv"
    E142 = "e142"
    PNG = "png"


_EXT = {Target.CSV: ".csv", Target.E142: ".xml", Target.PNG: ".png"}

FilesArg = Annotated[
    list[Path], typer.Argument(help="Tester or dataset files (any supported format).")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="Skip content detection and read as this format."),
]
RetestOpt = Annotated[
    RetestPolicy,
    typer.Option("--retest", help="Which result to keep for a die tested more than once."),
]


def output_stem(path: Path) -> str:
    """A file name for outputs: the input's name without compression and format suffixes."""
    name = path.name
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    base, dot, ext = name.rpartition(".")
    if dot and base and ext.isalpha() and len(ext) <= 5:
        name = base  # lot2.stdf -> lot2; 001.QR2352-CP-1 and wafer.000 keep their dots
    return name or "wafer"


def summary_dict(wafer: WaferMap, report: QualityReport) -> dict[str, Any]:
    info = wafer.info
    y = wafer.yield_fraction
    ext = wafer.extent
    return {
        **wafer.identity_dict(),
        "program": info.program,
        "start_time": info.start_time.isoformat() if info.start_time else None,
        "end_time": info.end_time.isoformat() if info.end_time else None,
        "grid": None if ext is None else [ext[2] - ext[0] + 1, ext[3] - ext[1] + 1],
        "die_count": wafer.die_count,
        "fail_count": wafer.fail_count,
        "yield": None if y is None else round(y, 6),
        "hard_bins": {str(k): v for k, v in sorted(wafer.bin_counts("hard").items())},
        "labels": list(wafer.labels),
        "partial": wafer.partial,
        "notes": list(wafer.notes),
        "defect_count": len(wafer.defects),
        "quality_score": report.score,
        "findings": [
            {
                "code": str(f.code),
                "severity": str(f.severity),
                "message": f.message,
                "count": f.count,
            }
            for f in report.findings
        ],
    }


def _print_summary(doc: dict[str, Any]) -> None:
    title = f"{doc['source']} [{doc['format']} #{doc['index']}]"
    print(title)
    print(
        f"  lot {doc['lot_id'] or '-'}  wafer {doc['wafer_id'] or '-'}  "
        f"tester {doc['tester_id'] or '-'}  program {doc['program'] or '-'}"
    )
    grid = "x".join(str(v) for v in doc["grid"]) if doc["grid"] else "-"
    y = "n/a" if doc["yield"] is None else f"{doc['yield']:.2%}"
    print(
        f"  grid {grid}  dies {doc['die_count']:,}  fail {doc['fail_count']:,}  yield {y}"
        + (f"  defects {doc['defect_count']:,}" if doc["defect_count"] else "")
        + ("  PARTIAL" if doc["partial"] else "")
    )
    bins = sorted(doc["hard_bins"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{'?' if k == '-1' else k}:{v:,}" for k, v in bins[:8])
    print(f"  hard bins {shown}{' ...' if len(bins) > 8 else ''}")
    if doc["labels"]:
        print(f"  labels {', '.join(doc['labels'])}")
    print(f"  quality {doc['quality_score']:.2f}")
    for f in doc["findings"]:
        print(f"    {f['severity']:<7} {f['code']}: {f['message']}")
    for note in doc["notes"]:
        print(f"    note: {note}")


def inspect(
    files: FilesArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per wafer per line (JSON Lines).")
    ] = False,
    fmt: FormatOpt = None,
    retest: RetestOpt = RetestPolicy.LAST,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many wafers per file.")
    ] = None,
) -> int:
    """Summarise every wafer in the files: ids, grid, dies, fails, yield, bins, findings."""
    failures = 0
    options = ReadOptions(retest=retest)
    for path in files:
        try:
            for i, wafer in enumerate(_read_maps(path, format=fmt, options=options)):
                if limit is not None and i >= limit:
                    break
                doc = summary_dict(wafer, check(wafer))
                if as_json:
                    sys.stdout.write(json.dumps(doc) + "\n")
                else:
                    _print_summary(doc)
            sys.stdout.flush()
        except WaferscopeError as exc:
            failures += 1
            print(f"waferscope: error: {exc}", file=sys.stderr)
    return 1 if failures else 0


def convert(
    file: Annotated[Path, typer.Argument(help="Input file (any supported format).")],
    to: Annotated[Target, typer.Option("--to", help="Output format.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (csv, e142) or folder (png: one picture per wafer). "
            "Default: next to the current directory, named after the input.",
        ),
    ] = None,
    fmt: FormatOpt = None,
    retest: RetestOpt = RetestPolicy.LAST,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many wafers.")
    ] = None,
) -> int:
    """Convert a file to CSV, SEMI E142 XML, or PNG pictures (dies coloured by bin, notch)."""
    options = ReadOptions(retest=retest)
    stem = output_stem(file)
    wafers = []
    for i, wafer in enumerate(_read_maps(file, format=fmt, options=options)):
        if limit is not None and i >= limit:
            break
        wafers.append(wafer)
    if not wafers:
        raise WaferscopeError(f"{file}: no wafers to convert")
    if to is Target.PNG:
        from waferscope.protocols.render import render_png

        folder = output or Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        for w in wafers:
            name = (
                f"{stem}-{w.provenance.wafer_index:04d}.png" if len(wafers) > 1 else f"{stem}.png"
            )
            (folder / name).write_bytes(render_png(w))
            print(folder / name)
        return 0
    target = output or Path.cwd() / f"{stem}{_EXT[to]}"
    writer = get_writer(str(to))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with tmp.open("wb") as stream:
        writer.write(wafers, stream)
    tmp.replace(target)
    print(target)
    return 0


def formats() -> None:
    """List the formats this installation reads (in detection order) and which it writes."""
    for fmt in list_formats():
        writes = "read/write" if hasattr(fmt, "write") else "read"
        print(f"{fmt.name:<10} {writes:<10} {fmt.title}")


def register(app: typer.Typer) -> None:
    app.command()(inspect)
    app.command()(convert)
    app.command()(formats)
    app.command("simulate-tester")(simulate_tester)
    register_release(app)
