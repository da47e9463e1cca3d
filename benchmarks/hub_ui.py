"""Hub UI: page render times on a database of 1,000,000 results, and stored bytes per wafer.

Builds (once, cached under benchmarks/.work/) a hub database with 1M results: 20 testers over 60
days, 40,000 lots, three model versions, the WM-811K class mix, 5 % in the review queue, 20,000
labels, 5,000 alerts, and embeddings on every tenth result. Maps and heatmaps come from 3,000 real
WM-811K maps (stored once each in the blob store, content-addressed, shared by the rows that use
them). Rows are bulk-inserted with SQLAlchemy Core (the ingest path would take an hour here).

Then every page of the reviewer UI is requested through litestar's test client (in process, as a
logged-in reviewer) and the server-side time per request is recorded: p50 and p95 over
``--requests`` requests per page, each with other parameters (random wafer, tester, lot, ...).

    python benchmarks/hub_ui.py [--rows 1000000] [--requests 40] [--db sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from waferscope.hub.app import Hub
from waferscope.hub.config import HubConfig
from waferscope.hub.db.schema import (
    AlertRow,
    Heatmap,
    Label,
    Result,
    ReviewItem,
    Tester,
    Wafer,
    table,
)
from waferscope.hub.mapcodec import encode_heatmap, encode_map
from waferscope.hub.store.users import add_user
from waferscope.protocols import messages
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_dense
from waferscope.protocols.pb.result_pb2 import Heatmap as HeatmapMsg

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WAFER_DATA_DIR", REPO.parent / "shared" / "data"))
WORK = REPO / "benchmarks" / ".work" / "hub-ui"
CLASSES = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)
SHARE = (0.04, 0.01, 0.05, 0.08, 0.04, 0.002, 0.01, 0.02, 0.748)
CAUSES = ("probe-card", "etch-nonuniformity", "particles", "handling", "none")
NOW = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
"""The newest result is from the hour the database was built (trends look back from now)."""


def blobs_pool(hub: Hub, count: int) -> list[tuple[str, str, int, int, bytes]]:
    """(map key, heatmap key, rows, cols, embedding bytes) for real maps."""
    arrays = load_labelled_arrays(DATA / "wm811k" / "val.npz")
    pool = []
    for i in range(count):
        grid = np.asarray(arrays.maps[(i * 7919) % len(arrays)])
        enc = encode_dense(grid)
        heat = (np.clip(enc[1] * 4, 0, 1) * 255).astype(np.uint8)
        map_key = hub.blobs.put("maps", encode_map(messages.pack_states(grid)))
        heat_key = hub.blobs.put(
            "heatmaps", encode_heatmap(HeatmapMsg(rows=64, cols=64, data=heat.tobytes()))
        )
        emb = enc[1].reshape(8, 8, 8, 8).mean(axis=(1, 3)).astype(np.float32).tobytes()
        pool.append((map_key, heat_key, grid.shape[0], grid.shape[1], emb))
    return pool


def build(hub: Hub, rows: int, chunk: int = 20_000) -> None:
    rng = random.Random(7)
    pool = blobs_pool(hub, 3000)
    testers = [f"T-{i:02d}" for i in range(20)]
    models = ["2026.03.1", "2026.04.0", "2026.05.2"]
    span = timedelta(days=60).total_seconds()
    w_t, r_t, h_t, q_t, l_t = (table(m) for m in (Wafer, Result, Heatmap, ReviewItem, Label))
    done = 0
    started = time.time()
    while done < rows:
        n = min(chunk, rows - done)
        wafers, results, heats, queue, labels = [], [], [], [], []
        for k in range(done, done + n):
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            map_key, heat_key, nr, nc, emb = pool[k % len(pool)]
            when = NOW - timedelta(seconds=span * (1 - k / rows))
            pattern = rng.choices(CLASSES, SHARE)[0]
            conf = min(0.999, max(0.2, rng.gauss(0.85, 0.12)))
            tester = testers[k % 20]
            lot = f"LOT{k // 25:06d}"
            model = models[min(2, int(3 * k / rows))]
            wafers.append(
                {
                    "id": rid,
                    "lot_id": lot,
                    "wafer_id": f"{k % 25 + 1:02d}",
                    "tester_id": tester,
                    "device_id": f"edge-{k % 20:02d}",
                    "die_count": nr * nc // 2,
                    "pass_count": nr * nc // 2 - 10,
                    "fail_count": 10,
                    "yield_fraction": 0.95,
                    "map_rows": nr,
                    "map_cols": nc,
                    "map_blob": map_key,
                    "created_at": when,
                }
            )
            results.append(
                {
                    "result_id": rid,
                    "wafer_ref": rid,
                    "device_id": f"edge-{k % 20:02d}",
                    "sequence": k // 20 + 1,
                    "lot_id": lot,
                    "wafer_id": f"{k % 25 + 1:02d}",
                    "tester_id": tester,
                    "classified_time": when,
                    "received_time": when,
                    "ingested_at": when,
                    "pattern": pattern,
                    "pattern_probability": conf,
                    "confidence": conf,
                    "root_cause": CAUSES[k % 5],
                    "root_cause_probability": 0.5,
                    "probabilities": {
                        "pattern": [
                            [c, round(conf if c == pattern else (1 - conf) / 8, 4)] for c in CLASSES
                        ],
                        "root_cause": [[c, 0.2] for c in CAUSES],
                    },
                    "model_version": model,
                    "encoding_version": 1,
                    "runtime_provider": "CPUExecutionProvider",
                    "review_required": conf < 0.6,
                    "review_reason": "low_confidence" if conf < 0.6 else "unspecified",
                    "quality_score": 1.0,
                    "hot_regions": [[0, 0, 5, 5, 0.7, 3]],
                    "embedding": emb if k % 10 == 0 else None,
                    "origin": "edge",
                }
            )
            heats.append(
                {
                    "result_id": rid,
                    "rows": 64,
                    "cols": 64,
                    "blob": heat_key,
                    "target_class": pattern,
                    "method": "gradcam",
                }
            )
            if conf < 0.6 or k % 50 == 0:
                queue.append(
                    {
                        "result_id": rid,
                        "priority": 3 - conf,
                        "reason": "low_confidence",
                        "state": "open" if rng.random() < 0.7 else "done",
                        "enqueued_at": when,
                    }
                )
            if k % 50 == 1:
                labels.append(
                    {
                        "wafer_ref": rid,
                        "result_id": rid,
                        "pattern": pattern,
                        "root_cause": "",
                        "labelled_by": "rita",
                        "labelled_at": when,
                    }
                )
        with hub.db.connect() as conn:
            conn.execute(w_t.insert(), wafers)
            conn.execute(r_t.insert(), results)
            conn.execute(h_t.insert(), heats)
            if queue:
                conn.execute(q_t.insert(), queue)
            if labels:
                conn.execute(l_t.insert(), labels)
        done += n
        print(f"  {done:,} rows ({time.time() - started:.0f} s)", file=sys.stderr)
    with hub.db.connect() as conn:
        conn.execute(
            table(Tester).insert(),
            [{"tester_id": t, "device_id": None, "first_seen": NOW} for t in testers],
        )
        conn.execute(
            table(AlertRow).insert(),
            [
                {
                    "alert_id": str(uuid.uuid4()),
                    "source": "edge",
                    "device_id": "edge-01",
                    "sequence": i,
                    "rule_id": "pattern-repeat",
                    "rule_kind": "pattern_repeat",
                    "severity": "warning",
                    "title": f"alert {i}",
                    "message": "",
                    "pattern": "Scratch",
                    "tester_id": testers[i % 20],
                    "lot_id": "",
                    "wafer_id": "",
                    "dedup_key": f"k{i}",
                    "raised_time": NOW - timedelta(minutes=i),
                    "ingested_at": NOW,
                    "acknowledged": i % 3 == 0,
                }
                for i in range(5000)
            ],
        )
    if hub.db.dialect == "sqlite":
        with hub.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with hub.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def measure(hub: Hub, requests: int) -> dict[str, dict[str, float]]:
    from litestar.testing import TestClient
    from sqlalchemy import func, select

    rng = random.Random(11)
    with hub.db.session() as s:
        total = s.scalar(select(func.count()).select_from(Result))
        ids = list(
            s.scalars(select(Result.result_id).where(Result.embedding.is_not(None)).limit(5000))
        )
        ids += list(s.scalars(select(Result.result_id).limit(5000).offset(total // 2)))
    token = hub.tokens.issue("rita", "reviewer")
    headers = {"Authorization": f"Bearer {token}"}
    testers = [f"T-{i:02d}" for i in range(20)]

    def lot() -> str:
        return f"LOT{rng.randrange(total // 25):06d}"

    day = (NOW - timedelta(days=rng.randrange(1, 50))).date().isoformat()
    pages = {
        "queue": lambda: "/ui/queue",
        "wafer page": lambda: f"/ui/wafers/{rng.choice(ids)}",
        "results (no filter)": lambda: "/ui/results",
        "results by tester": lambda: f"/ui/results?tester={rng.choice(testers)}",
        "results by tester + pattern": lambda: (
            f"/ui/results?tester={rng.choice(testers)}&pattern={rng.choice(CLASSES[:8])}"
        ),
        "results by lot": lambda: f"/ui/results?lot={lot()}",
        "results by day": lambda: f"/ui/results?date_from={day}&date_to={day}T23:59:59",
        "results by model": lambda: "/ui/results?model_version=2026.04.0",
        "trends (one tester, 30 days)": lambda: f"/ui/trends?tester={rng.choice(testers)}",
        "alerts": lambda: "/ui/alerts",
        "devices": lambda: "/ui/devices",
        "map picture": lambda: f"/ui/wafers/{rng.choice(ids)}/map.png",
        "Grad-CAM overlay picture": lambda: f"/ui/wafers/{rng.choice(ids)}/overlay.png",
        "similar wafers (fragment)": lambda: f"/ui/wafers/{rng.choice(ids[:5000])}/similar",
        "API results page": lambda: f"/api/v1/results?tester={rng.choice(testers)}&limit=50",
    }
    out: dict[str, dict[str, float]] = {}
    with TestClient(hub.web_app()) as client:
        client.get(f"/ui/wafers/{ids[0]}/similar", headers=headers)  # loads the index once
        for name, url in pages.items():
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                res = client.get(url(), headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                assert res.status_code == 200, (name, res.status_code, res.text[:200])
            out[name] = {
                "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p95_ms": round(float(np.percentile(times, 95)), 1),
                "max_ms": round(max(times), 1),
            }
            print(
                f"{name:32s} p50 {out[name]['p50_ms']:7.1f} ms  p95 {out[name]['p95_ms']:7.1f} ms",
                file=sys.stderr,
            )
    return out


def bytes_per_wafer(hub: Hub) -> dict[str, float]:
    """Stored map and heatmap bytes per wafer, over the 3,000 real maps of the pool."""
    from sqlalchemy import select

    with hub.db.session() as s:
        keys = list(s.scalars(select(Wafer.map_blob).distinct()))
        heats = list(s.scalars(select(Heatmap.blob).distinct()))
    maps = [len(hub.blobs.get(k)) for k in keys]
    arrays = load_labelled_arrays(DATA / "wm811k" / "val.npz")
    cells = [arrays.maps[(i * 7919) % len(arrays)].size for i in range(len(keys))]
    return {
        "maps": len(maps),
        "map_bytes_mean": round(float(np.mean(maps)), 1),
        "map_bytes_median": float(np.median(maps)),
        "dense_uint8_bytes_mean": round(float(np.mean(cells)), 1),
        "packed_2bit_bytes_mean": round(float(np.mean([-(-c // 4) for c in cells])), 1),
        "heatmap_bytes_mean": round(float(np.mean([len(hub.blobs.get(k)) for k in heats])), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "WAFERSCOPE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="a database to connect to while (re)creating the benchmark database ws_hub_ui_bench",
    )
    args = parser.parse_args()
    folder = WORK / f"{args.db}-{args.rows}"
    config: dict[str, object] = {
        "data_dir": str(folder),
        "mqtt": {"enabled": False},
        "auth": {"jwt_secret": "u" * 40},
    }
    if (folder / "built").exists() and time.time() - (folder / "built").stat().st_mtime > 86400:
        import shutil

        shutil.rmtree(folder)  # older than a day: trends would look at an empty window
    fresh = not (folder / "built").exists()
    if args.db == "postgresql":
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        if fresh:
            admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE IF EXISTS "ws_hub_ui_bench" WITH (FORCE)'))
                conn.execute(text('CREATE DATABASE "ws_hub_ui_bench"'))
            admin.dispose()
        url = make_url(args.pg_admin_url).set(database="ws_hub_ui_bench")
        config["database"] = {"url": url.render_as_string(hide_password=False)}
    hub = Hub(HubConfig.model_validate(config))
    if fresh:
        print(f"building a database of {args.rows:,} results in {folder}", file=sys.stderr)
        t = time.time()
        build(hub, args.rows)
        with hub.db.session(write=True) as s:
            add_user(s, "rita", "correct horse", "reviewer")
        (folder / "built").write_text(f"{time.time() - t:.0f} s\n")
    result = {
        "rows": args.rows,
        "db": args.db,
        "pages": measure(hub, args.requests),
        "storage": bytes_per_wafer(hub),
    }
    hub.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
