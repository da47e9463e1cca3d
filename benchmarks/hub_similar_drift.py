"""Similar-wafer search (pgvector HNSW vs the in-memory index) and the drift job's cost.

Fills a fresh PostgreSQL database per size with synthetic results carrying 128-float embeddings
(the shipped engine's size; 64 clusters plus noise), then for each backend: preparation time
(pgvector: copy into ``result_vectors`` and HNSW build; memory: loading the matrix), query latency
(p50/p95 over 200 queries), recall@10 against exact cosine neighbours, and Python heap held by the
backend (tracemalloc peak over preparation and one query). The drift part times one
``DriftMonitor.run_once`` over 20 (device, model) pairs of 1,000 results each.

    .venv/bin/python benchmarks/hub_similar_drift.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import create_engine, text

from waferscope.hub.db import migrate
from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Result, Wafer, table
from waferscope.hub.drift.config import DriftConfig
from waferscope.hub.drift.job import DriftMonitor
from waferscope.hub.similar import SimilarWafers
from waferscope.hub.similar_pg import search_sql

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DIM = 128
CLASSES = ["Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch"]


def fresh_database() -> tuple[Database, str]:
    name = f"ws_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    db = Database(ADMIN.rsplit("/", 1)[0] + "/" + name)
    migrate.upgrade(db.engine)
    return db, name


def drop(db: Database, name: str) -> None:
    db.dispose()
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fill(
    db: Database,
    n: int,
    rng: np.random.Generator,
    *,
    devices: int = 1,
    shift: float = 0.0,
    embed: bool = True,
) -> np.ndarray:
    """n results (per device), embeddings from 64 clusters; returns the embedding matrix."""
    centres = rng.normal(size=(64, DIM)).astype(np.float32)
    t0 = datetime(2026, 11, 1)
    out = []
    for d in range(devices):
        labels = rng.integers(0, 64, size=n)
        emb = (centres[labels] + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)
        if shift and d % 2:
            half = n // 2
            emb[half:] += shift
            labels[half:] = np.where(rng.random(n - half) < 0.3, 3, labels[half:])
        out.append(emb)
        for start in range(0, n, 5000):
            end = min(n, start + 5000)
            wafers, results = [], []
            for i in range(start, end):
                wid = str(uuid.uuid4())
                when = t0 + timedelta(seconds=30 * i)
                wafers.append({"id": wid, "created_at": when})
                results.append(
                    {
                        "result_id": str(uuid.uuid4()),
                        "wafer_ref": wid,
                        "device_id": f"edge-{d:02d}",
                        "tester_id": f"T-{d:02d}",
                        "classified_time": when,
                        "ingested_at": when,
                        "pattern": CLASSES[labels[i] % len(CLASSES)],
                        "model_version": "2026.11.0",
                        "embedding": emb[i].tobytes() if embed else None,
                    }
                )
            with db.connect() as conn:
                conn.execute(table(Wafer).insert(), wafers)
                conn.execute(table(Result).insert(), results)
    return np.vstack(out)


def ids(db: Database) -> list[str]:
    with db.connect(write=False) as conn:
        return list(
            conn.execute(text("SELECT result_id FROM results ORDER BY classified_time")).scalars()
        )


def exact(matrix: np.ndarray, i: int, k: int) -> list[int]:
    m = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    d = 1 - m @ m[i]
    d[i] = np.inf
    return list(np.argsort(d)[:k])


def bench_search(n: int) -> None:
    rng = np.random.default_rng(n)
    db, name = fresh_database()
    try:
        t = time.perf_counter()
        matrix = fill(db, n, rng)
        fill_s = time.perf_counter() - t
        order = ids(db)
        position = {rid: i for i, rid in enumerate(order)}
        probes = rng.choice(n, 200, replace=False)
        for backend in ("memory", "pgvector"):
            s = SimilarWafers(db, backend=backend, max_candidates=n, refresh_s=3600)
            t = time.perf_counter()
            if backend == "pgvector":
                s.sync()
            s.query(order[int(probes[0])], k=10)
            prep_s = time.perf_counter() - t
            lat, hits = [], 0
            for p in probes:
                t = time.perf_counter()
                found = s.query(order[int(p)], k=10)
                lat.append((time.perf_counter() - t) * 1000)
                truth = set(exact(matrix, int(p), 10))
                hits += len(truth & {position[f.result_id] for f in found})
            # heap held: a fresh backend, traced over preparation and one query
            fresh = SimilarWafers(db, backend=backend, max_candidates=n, refresh_s=3600)
            tracemalloc.start()
            fresh.query(order[int(probes[1])], k=10)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            extra = ""
            if backend == "pgvector":
                with db.connect(write=False) as conn:
                    size = conn.execute(
                        text("SELECT pg_total_relation_size('result_vectors')")
                    ).scalar()
                    q = conn.execute(
                        text("SELECT embedding::text FROM result_vectors LIMIT 1")
                    ).scalar()
                    conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
                    plan = conn.execute(
                        text("EXPLAIN " + search_sql(DIM).text),
                        {"q": q, "m": "2026.11.0", "w": "-", "k": 10},
                    ).scalars()
                    scan = next((line for line in plan if "Scan" in line), "?").strip()
                extra = f" table+index {size / 2**20:.0f} MiB on disk; plan: {scan}"
            lat.sort()
            p50, p95 = statistics.median(lat), lat[int(0.95 * len(lat))]
            print(
                f"similar n={n} backend={backend}: fill {fill_s:.0f} s, prepare {prep_s:.1f} s, "
                f"query p50 {p50:.2f} ms p95 {p95:.2f} ms, "
                f"recall@10 {hits / (10 * len(probes)):.3f}, heap peak {peak / 2**20:.1f} MiB"
                + extra,
                flush=True,
            )
    finally:
        drop(db, name)


def bench_drift() -> None:
    rng = np.random.default_rng(1)
    db, name = fresh_database()
    try:
        fill(db, 1000, rng, devices=20, shift=0.4)
        for perms in (200, 1000):
            monitor = DriftMonitor(db, DriftConfig(permutations=perms))
            t = time.perf_counter()
            rows = monitor.run_once()
            took = time.perf_counter() - t
            drifted = sum(r["status"] == "drift" for r in rows)
            print(
                f"drift: {len(rows)} pairs x 1000 results, windows 500/500, max_samples 300, "
                f"{perms} permutations: {took:.1f} s per run ({took / len(rows) * 1000:.0f} ms "
                f"per pair), {drifted} pairs flagged (10 shifted)",
                flush=True,
            )
    finally:
        drop(db, name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--skip-drift", action="store_true")
    args = ap.parse_args()
    if not args.skip_drift:
        bench_drift()
    for n in args.sizes:
        bench_search(n)


if __name__ == "__main__":
    main()
