"""The whole path, file in a hot folder -> row committed at the hub, on this machine.

Starts the real appliance (a private Mosquitto, the hub on SQLite, N edge agents with the shipped
INT8 engine, each its own process: waferscope.appliance) and replays real WM-811K validation
maps as tester files (STDF, TSK, E142, CSV in turn) into the edges' hot folders, at a fixed
offered rate for a fixed time. The files are written by the tester simulator beforehand into a
staging folder (a real tester is another machine; its work is not the appliance's), then renamed
into the hot folders on schedule. Per wafer, the latency is

    hub ``results.ingested_at`` (the hub's clock when it stores the batch, inside the
    transaction that commits it)  -  the moment the complete file was renamed into the hot
    folder

both on this machine's clock. Sustained rate = wafers committed / (last commit - first file).

    python benchmarks/appliance_path.py --edges 1 --rates 25 50 100 --duration 30
    python benchmarks/appliance_path.py --edges 2 --rates 50 100 --duration 30

Results go to stdout as a Markdown table and to benchmarks/.work/appliance_path-<edges>e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from waferscope.appliance import Appliance, ApplianceOptions
from waferscope.appliance.processes import free_port
from waferscope.protocols.simulator import Output, TesterSimulator

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"


PROFILES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "fast": (
        {"mqtt": {"encoding": "protobuf"}, "store": {"synchronous": "normal"}},
        {"ingest": {"batch_wait_ms": 5}},
    ),
}


def data_dir() -> Path:
    env = os.environ.get("WAFER_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def hub_query(app: Appliance, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the hub's SQLite database, read-only beside the running hub (WAL)."""
    conn = sqlite3.connect(f"file:{app.layout.hub_database}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def hub_count(app: Appliance) -> int:
    return int(hub_query(app, "SELECT COUNT(*) FROM results")[0][0])


def hub_times(app: Appliance) -> dict[tuple[str, str, str], tuple[datetime, ...]]:
    """(edge received, edge classified, hub ingested) per (lot, wafer, tester)."""
    rows = hub_query(
        app,
        "SELECT lot_id, wafer_id, tester_id, received_time, classified_time, ingested_at"
        " FROM results",
    )
    return {
        (r[0], r[1], r[2]): tuple(datetime.fromisoformat(t).replace(tzinfo=UTC) for t in r[3:6])
        for r in rows
    }


def wait_count(app: Appliance, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub_count(app) >= n:
            return True
        time.sleep(0.1)
    return False


def replay(staged: list[dict[str, Any]], folders: dict[str, Path], rate: float) -> float:
    """Rename the staged files into the hot folders on a fixed schedule (``rate`` per second,
    against a monotonic clock); set each entry's ``written_at``; return the worst lateness."""
    t0 = time.monotonic()
    late = 0.0
    for i, entry in enumerate(staged):
        due = t0 + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        late = max(late, time.monotonic() - due)
        src = Path(entry["path"])
        os.replace(src, folders[entry["tester"]] / src.name)
        entry["written_at"] = datetime.now(UTC).isoformat()
    return late


def run_rate(
    app: Appliance, source: Path, rate: float, duration: float, fmt: str, tag: str
) -> dict[str, Any]:
    """The tester's work (writing STDF/TSK/E142/CSV files) is done first, into a staging folder
    beside each hot folder: a real tester is another machine. The measured part only renames
    each complete file into its hot folder at the scheduled time."""
    manifest = app.layout.root / f"manifest-{tag}.jsonl"
    manifest.unlink(missing_ok=True)
    stages = {e.layout.tester_id: e.layout.data_dir / f"stage-{tag}" for e in app.edges}
    for folder in stages.values():
        folder.mkdir(parents=True, exist_ok=True)
    TesterSimulator(
        [str(source)],
        [Output(stages[e.layout.tester_id], fmt, e.layout.tester_id) for e in app.edges],
        rate=None,
        count=int(rate * duration),
        loop=True,
        shuffle=True,
        seed=int(rate),
        manifest=manifest,
        lot_prefix=f"B{tag}",
    ).run()
    written = [json.loads(line) for line in manifest.read_text().splitlines()]
    before = hub_count(app)
    folders = {e.layout.tester_id: e.layout.hot_folder for e in app.edges}
    max_late = replay(written, folders, rate)
    drained = wait_count(app, before + len(written), 120)
    times = hub_times(app)
    lat = []
    pickup, edge_ms, hub_ms = [], [], []
    commits = []
    for w in written:
        key = (w["lot"], w["wafer"], w["tester"])
        if key in times:
            t0 = datetime.fromisoformat(w["written_at"])
            received, classified, ingested = times[key]
            lat.append((ingested - t0).total_seconds() * 1000.0)
            pickup.append((received - t0).total_seconds() * 1000.0)
            edge_ms.append((classified - received).total_seconds() * 1000.0)
            hub_ms.append((ingested - classified).total_seconds() * 1000.0)
            commits.append(ingested)
    first = min(datetime.fromisoformat(w["written_at"]) for w in written)
    span = (max(commits) - first).total_seconds() if commits else float("nan")
    a = np.array(lat)
    return {
        "edges": len(app.edges),
        "offered_per_s": rate,
        "duration_s": duration,
        "written": len(written),
        "replay_max_late_s": round(max_late, 3),
        "committed": len(lat),
        "all_committed": drained and len(lat) == len(written),
        "sustained_per_s": round(len(lat) / span, 1) if commits else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p90_ms": round(float(np.percentile(a, 90)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
        # where the time goes (p50 / p99): file in place -> edge took it, edge took it ->
        # classified, classified -> stored at the hub (outbox, broker, hub batch)
        "pickup_ms": [round(float(np.percentile(pickup, q)), 1) for q in (50, 99)],
        "edge_ms": [round(float(np.percentile(edge_ms, q)), 1) for q in (50, 99)],
        "to_hub_ms": [round(float(np.percentile(hub_ms, q)), 1) for q in (50, 99)],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--edges", type=int, default=1)
    ap.add_argument("--rates", type=float, nargs="+", default=[25.0, 50.0, 100.0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per offered rate")
    ap.add_argument("--format", default="mixed", help="stdf, tsk, e142, csv or mixed")
    ap.add_argument("--warmup", type=int, default=20, help="wafers before measuring")
    ap.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="default: the parts' default settings; fast: binary payloads, WAL 'normal' sync at "
        "the edge, a 5 ms hub batch window",
    )
    ap.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="engine bundle folder for the edges (default: the shipped one), e.g. a variant "
        "written by benchmarks/tta_engine.py",
    )
    args = ap.parse_args()
    source = data_dir() / "wm811k" / "val.npz"
    if not source.is_file():
        print(f"no WM-811K validation maps at {source} (set WAFER_DATA_DIR)", file=sys.stderr)
        return 1
    root = WORK / f"appliance_path-{args.edges}e-{args.profile}"
    edge_extra, hub_extra = PROFILES[args.profile]
    shutil.rmtree(root, ignore_errors=True)
    options = ApplianceOptions(
        edges=args.edges,
        hub_port=free_port(),
        edge_ports=[free_port() for _ in range(args.edges)],
        create_reviewer=False,
        edge_extra=edge_extra,
        hub_extra=hub_extra,
        bundle=args.bundle.resolve() if args.bundle else None,
    )
    app = Appliance(root, options)
    app.prepare()
    t0 = time.monotonic()
    app.start()
    print(f"appliance started in {time.monotonic() - t0:.1f} s ({args.edges} edge(s))", flush=True)
    rows = []
    try:
        warm = run_rate(app, source, 50.0, args.warmup / 50.0, args.format, "warm")
        print(f"warm-up: {warm['committed']} wafers, p50 {warm['p50_ms']} ms", flush=True)
        for rate in args.rates:
            time.sleep(2)
            row = run_rate(app, source, rate, args.duration, args.format, f"r{int(rate)}")
            row = {"profile": args.profile, "bundle": app.bundle.name if app.bundle else "", **row}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        app.stop()
    out = WORK / f"appliance_path-{args.edges}e-{args.profile}.json"
    out.write_text(json.dumps(rows, indent=2))
    print()
    print(
        "| profile | edges | offered /s | committed | sustained /s | p50 ms | p90 ms | p99 ms "
        "| max ms | pickup p50/p99 | edge p50/p99 | to hub p50/p99 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ok = "" if r["all_committed"] else " (not all)"
        print(
            f"| {r['profile']} | {r['edges']} | {r['offered_per_s']:g} "
            f"| {r['committed']}/{r['written']}{ok} "
            f"| {r['sustained_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} "
            f"| {r['max_ms']} | {r['pickup_ms'][0]} / {r['pickup_ms'][1]} "
            f"| {r['edge_ms'][0]} / {r['edge_ms'][1]} | {r['to_hub_ms'][0]} / {r['to_hub_ms'][1]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
