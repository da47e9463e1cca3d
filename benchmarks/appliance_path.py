"""The whole path, file in a hot folder -> row committed at the hub, on this machine.

Starts the real appliance (a private Mosquitto, the hub on SQLite, N edge agents with the shipped
INT8 engine, each its own process: waferscope.appliance) and replays real WM-811K validation
maps as tester files (STDF, TSK, E142, CSV in turn) into the edges' hot folders with the tester
simulator, at a fixed offered rate for a fixed time. Per wafer, the latency is

    hub ``results.ingested_at`` (the hub's clock when it stores the batch, inside the
    transaction that commits it)  -  the simulator's ``written_at`` (the file renamed into the
    hot folder, complete)

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


def data_dir() -> Path:
    env = os.environ.get("WAFER_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def hub_count(app: Appliance) -> int:
    conn = sqlite3.connect(f"file:{app.layout.hub_database}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    finally:
        conn.close()


def hub_times(app: Appliance) -> dict[tuple[str, str, str], datetime]:
    conn = sqlite3.connect(f"file:{app.layout.hub_database}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT lot_id, wafer_id, tester_id, ingested_at FROM results")
        return {(r[0], r[1], r[2]): datetime.fromisoformat(r[3]).replace(tzinfo=UTC) for r in rows}
    finally:
        conn.close()


def wait_count(app: Appliance, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub_count(app) >= n:
            return True
        time.sleep(0.1)
    return False


def run_rate(
    app: Appliance, source: Path, rate: float, duration: float, fmt: str, tag: str
) -> dict[str, Any]:
    manifest = app.layout.root / f"manifest-{tag}.jsonl"
    before = hub_count(app)
    sim = TesterSimulator(
        [str(source)],
        [Output(e.layout.hot_folder, fmt, e.layout.tester_id) for e in app.edges],
        rate=rate,
        duration_s=duration,
        loop=True,
        shuffle=True,
        seed=int(rate),
        manifest=manifest,
        lot_prefix=f"B{tag}",
    )
    stats = sim.run()
    written = [json.loads(line) for line in manifest.read_text().splitlines()]
    drained = wait_count(app, before + len(written), 120)
    times = hub_times(app)
    lat = []
    commits = []
    for w in written:
        key = (w["lot"], w["wafer"], w["tester"])
        if key in times:
            t0 = datetime.fromisoformat(w["written_at"])
            lat.append((times[key] - t0).total_seconds() * 1000.0)
            commits.append(times[key])
    first = min(datetime.fromisoformat(w["written_at"]) for w in written)
    span = (max(commits) - first).total_seconds() if commits else float("nan")
    a = np.array(lat)
    return {
        "edges": len(app.edges),
        "offered_per_s": rate,
        "duration_s": duration,
        "written": len(written),
        "simulator_rate": round(stats.rate, 1),
        "simulator_max_lag_s": round(stats.max_lag_s, 3),
        "committed": len(lat),
        "all_committed": drained and len(lat) == len(written),
        "sustained_per_s": round(len(lat) / span, 1) if commits else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p90_ms": round(float(np.percentile(a, 90)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--edges", type=int, default=1)
    ap.add_argument("--rates", type=float, nargs="+", default=[25.0, 50.0, 100.0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per offered rate")
    ap.add_argument("--format", default="mixed", help="stdf, tsk, e142, csv or mixed")
    ap.add_argument("--warmup", type=int, default=20, help="wafers before measuring")
    args = ap.parse_args()
    source = data_dir() / "wm811k" / "val.npz"
    if not source.is_file():
        print(f"no WM-811K validation maps at {source} (set WAFER_DATA_DIR)", file=sys.stderr)
        return 1
    root = WORK / f"appliance_path-{args.edges}e"
    shutil.rmtree(root, ignore_errors=True)
    options = ApplianceOptions(
        edges=args.edges,
        hub_port=free_port(),
        edge_ports=[free_port() for _ in range(args.edges)],
        create_reviewer=False,
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
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        app.stop()
    out = WORK / f"appliance_path-{args.edges}e.json"
    out.write_text(json.dumps(rows, indent=2))
    print()
    print("| edges | offered /s | committed | sustained /s | p50 ms | p90 ms | p99 ms | max ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ok = "" if r["all_committed"] else " (not all)"
        print(
            f"| {r['edges']} | {r['offered_per_s']:g} | {r['committed']}/{r['written']}{ok} "
            f"| {r['sustained_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} "
            f"| {r['max_ms']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
