"""Store-and-forward: N results buffered at an edge while the hub is unreachable, then drained.

1. Starts the real appliance (private Mosquitto, hub on SQLite, one edge agent with the shipped
   INT8 engine) and sends ``--seed-wafers`` real WM-811K maps through it (hot folder -> hub).
2. Stops the edge and the broker. The edge's outbox is filled to ``--results`` results: copies
   of those real results (their heatmaps included) with new result ids, written through the
   edge's own ``Store.commit`` (the same transaction the agent uses: result row + outbox row,
   sequence numbers assigned there). Classifying 100,000 maps first would only add ~5 minutes
   of inference to a measurement of the drain.
3. Starts the edge (it cannot reach the broker: everything stays buffered), then the broker,
   and measures the time from the broker being up to the last result committed at the hub.
4. Checks loss and duplicates at the hub: every result id once, sequences 1..N without a gap.

    python benchmarks/store_forward.py --results 100000
    python benchmarks/store_forward.py --results 100000 --encodings json protobuf

Each ``--encodings`` x ``--max-inflight`` pair is a separate run (the edge's mqtt.encoding and
mqtt.max_inflight), side by side in one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from appliance_path import WORK, data_dir, hub_query

from waferscope.appliance import Appliance, ApplianceOptions
from waferscope.appliance.processes import free_port
from waferscope.edge.store import FileRecord, Store
from waferscope.protocols import messages
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.simulator import Output, TesterSimulator


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(check: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def fill_outbox(db: Path, total: int) -> tuple[int, float, int]:
    """Copies of the stored real results until the edge holds ``total``; (added, s, bytes)."""
    store = Store(db, max_bytes=64 * 1024**3, prune_to=0.9, synchronous="NORMAL")
    try:
        conn = sqlite3.connect(db)
        seeds = [
            result_pb2.WaferResult.FromString(r[0])
            for r in conn.execute("SELECT message FROM results ORDER BY sequence")
        ]
        have = int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        conn.close()
        t0 = time.perf_counter()
        added = 0
        batch = 1000
        while have + added < total:
            n = min(batch, total - have - added)
            digest = f"benchmark-copy-{have + added:09d}"
            results = []
            for i in range(n):
                r = result_pb2.WaferResult()
                r.CopyFrom(seeds[(added + i) % len(seeds)])
                r.result_id = messages.new_message_id()
                r.correlation_id = r.result_id
                r.wafer.wafer_index = i
                r.wafer.source_name = digest
                results.append((digest, r))
            store.commit(
                files=[FileRecord(digest, digest, "folder", "accepted", wafer_count=n)],
                results=results,
            )
            added += n
        size = db.stat().st_size
        return added, time.perf_counter() - t0, size
    finally:
        store.close()


def run(
    results: int,
    seed_wafers: int,
    max_inflight: int,
    encoding: str,
    source: Path,
    hub_workers: int = 1,
) -> dict[str, Any]:
    root = WORK / f"store_forward-{encoding}-{max_inflight}-{hub_workers}"
    shutil.rmtree(root, ignore_errors=True)
    app = Appliance(
        root,
        ApplianceOptions(
            edges=1,
            hub_port=free_port(),
            edge_ports=[free_port()],
            create_reviewer=False,
            hub_extra={"ingest": {"workers": hub_workers}},
            edge_extra={
                "store": {"max_bytes": 16 * 1024**3},
                "mqtt": {"max_inflight": max_inflight, "encoding": encoding},
            },
        ),
    )
    app.prepare()
    app.start()
    assert app.broker is not None
    assert app.hub is not None
    edge = app.edges[0]
    try:
        TesterSimulator(
            [str(source)],
            [Output(edge.layout.hot_folder, "mixed", edge.layout.tester_id)],
            rate=None,
            count=seed_wafers,
            shuffle=True,
        ).run()
        count_sql = "SELECT COUNT(*) FROM results"
        if not wait(lambda: hub_query(app, count_sql)[0][0] >= seed_wafers, 120):
            raise SystemExit("the seed wafers did not reach the hub")
        edge.process.stop(timeout=60)
        app.broker.stop()
        added, fill_s, db_bytes = fill_outbox(edge.layout.database, results)
        print(f"outbox filled: {added} copies in {fill_s:.1f} s, edge DB {db_bytes / 1e6:.0f} MB")
        edge.process.start()  # the broker is down: the agent keeps everything buffered
        time.sleep(3)
        parts = {"edge": edge.process, "hub": app.hub}
        cpu0 = {k: cpu_seconds(p.pid) for k, p in parts.items()}
        t0 = time.monotonic()
        app.broker.start()
        ok = wait(lambda: hub_query(app, count_sql)[0][0] >= results, 900, interval=0.5)
        drain_s = time.monotonic() - t0
        cpu = {k: round(cpu_seconds(p.pid) - cpu0[k], 1) for k, p in parts.items()}
        cpu["broker"] = round(cpu_seconds(app.broker.process.pid), 1)
        time.sleep(3)  # anything late (a duplicate) would show now
        rows = hub_query(
            app,
            "SELECT COUNT(*), COUNT(DISTINCT sequence), MIN(sequence), MAX(sequence) FROM results",
        )
        n, distinct, lo, hi = rows[0]
        return {
            "results": results,
            "encoding": encoding,
            "max_inflight": max_inflight,
            "hub_workers": hub_workers,
            "drained": ok,
            "drain_s": round(drain_s, 1),
            "per_s": round((results - seed_wafers) / drain_s, 0),
            "hub_rows": n,
            "lost": results - int(distinct),
            "duplicates": int(n) - int(distinct),
            "sequence_range": [lo, hi],
            "cpu_s": cpu,
            "fill_s": round(fill_s, 1),
            "edge_db_mb": round(db_bytes / 1e6, 1),
        }
    finally:
        app.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--seed-wafers", type=int, default=200)
    ap.add_argument("--max-inflight", type=int, nargs="+", default=[64])
    ap.add_argument("--encodings", nargs="+", default=["json", "protobuf"])
    ap.add_argument(
        "--hub-workers",
        type=int,
        nargs="+",
        default=[1],
        help="hub ingest worker processes (shared subscription; CPU s counts worker 0 only)",
    )
    args = ap.parse_args()
    source = data_dir() / "wm811k" / "val.npz"
    if not source.is_file():
        print(f"no WM-811K validation maps at {source} (set WAFER_DATA_DIR)", file=sys.stderr)
        return 1
    rows = []
    for workers in args.hub_workers:
        for encoding in args.encodings:
            for inflight in args.max_inflight:
                row = run(args.results, args.seed_wafers, inflight, encoding, source, workers)
                print(json.dumps(row), flush=True)
                rows.append(row)
    (WORK / "store_forward.json").write_text(json.dumps(rows, indent=2))
    print(
        "\n| results | encoding | max_inflight | hub workers | drain s | results/s | lost "
        "| duplicates | CPU s edge / hub / broker |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        c = r["cpu_s"]
        print(
            f"| {r['results']} | {r['encoding']} | {r['max_inflight']} | {r['hub_workers']} "
            f"| {r['drain_s']} "
            f"| {r['per_s']:.0f} | {r['lost']} | {r['duplicates']} "
            f"| {c['edge']} / {c['hub']} / {c['broker']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
