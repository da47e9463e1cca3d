"""Similar-wafer search on both backends: pgvector (PostgreSQL) and the in-memory index (SQLite),
checked against brute-force cosine neighbours of real WM-811K maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hub_data import results
from sqlalchemy import select, text

from waferscope.hub.blobs import DirectoryBlobStore
from waferscope.hub.config import ReviewConfig
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import Result
from waferscope.hub.ingest.handler import stored_result_rows
from waferscope.hub.review_policy import UncertaintyFirst
from waferscope.hub.similar import SimilarWafers
from waferscope.hub.similar_pg import search_sql
from waferscope.hub.store.ingest import Batch, write_batch

SELECTOR = UncertaintyFirst(ReviewConfig(threshold=0.6, sample_rate=0.1))


def ingest(db: Database, blobs: DirectoryBlobStore, msgs: list) -> None:
    rows = [stored_result_rows(m, blobs=blobs, selector=SELECTOR, now=utcnow()) for m in msgs]
    with db.connect() as conn:
        write_batch(conn, Batch(results=rows))


def brute_force(db: Database, result_id: str, k: int) -> list[str]:
    with db.session() as s:
        rows = s.execute(
            select(Result.result_id, Result.wafer_ref, Result.embedding, Result.model_version)
        ).all()
    me = next(r for r in rows if r.result_id == result_id)
    q = np.frombuffer(me.embedding, np.float32)
    scored = []
    for r in rows:
        if r.wafer_ref == me.wafer_ref or r.model_version != me.model_version:
            continue
        v = np.frombuffer(r.embedding, np.float32)
        scored.append((1 - float(q @ v) / (np.linalg.norm(q) * np.linalg.norm(v)), r.result_id))
    return [rid for _, rid in sorted(scored)[:k]]


def test_both_backends_find_the_exact_neighbours(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    msgs = list(results(data_dir, 120))
    other = list(results(data_dir, 20, start=500, model_version="2026.04.0"))
    ingest(database, blob_dir, msgs + other)
    similar = SimilarWafers(database, refresh_s=0)
    expected_backend = "pgvector" if database.dialect == "postgresql" else "memory"
    assert similar.backend == expected_backend
    if expected_backend == "pgvector":
        assert similar.sync() == 140
    for m in msgs[:10]:
        found = similar.query(m.result_id, k=5)
        assert [n.result_id for n in found] == brute_force(database, m.result_id, 5)
        assert all(0 <= n.distance <= 2 for n in found)
        assert found == sorted(found, key=lambda n: n.distance)
    # other model versions are never mixed in
    near = {n.result_id for n in similar.query(other[0].result_id, k=50)}
    assert near <= {m.result_id for m in other[1:]}
    assert len(near) == 19


def test_pgvector_copies_new_results_incrementally(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("pgvector is PostgreSQL only")
    similar = SimilarWafers(database, refresh_s=3600)
    if similar.backend != "pgvector":
        pytest.skip("the vector extension is not installed in this PostgreSQL")
    first = list(results(data_dir, 30))
    ingest(database, blob_dir, first)
    assert similar.sync() == 30
    assert similar.sync() == 0  # redelivered rows in the look-back margin are skipped
    ingest(database, blob_dir, list(results(data_dir, 10, start=30)))
    assert similar.sync() == 10
    with database.connect(write=False) as conn:
        indexes = conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename = 'result_vectors'")
        ).scalars()
        assert "ix_result_vectors_hnsw_64" in set(indexes)  # 8 x 8 pooled test embeddings
        # the planner's choice at scale; 40 rows are cheaper to sort than to walk a graph
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_sort = off"))
        explain = text("EXPLAIN " + search_sql(64).text)
        params = {"q": "[" + ",".join(["0.5"] * 64) + "]", "m": "2026.03.1", "w": "x", "k": 5}
        plan = "\n".join(conn.execute(explain, params).scalars())
    assert "ix_result_vectors_hnsw_64" in plan


def test_the_hub_keeps_result_vectors_filled_in_the_background(
    tmp_path: Path, db_url: str, data_dir: Path
) -> None:
    from hub_support import wait_for
    from hub_testing import feed, hub_config

    from waferscope.hub.app import Hub

    if not db_url.startswith("postgresql"):
        pytest.skip("pgvector is PostgreSQL only")
    hub = Hub(hub_config(tmp_path, db_url))
    try:
        if hub.similar.backend != "pgvector":
            pytest.skip("the vector extension is not installed in this PostgreSQL")
        hub.similar.refresh_s = 0.2
        hub.start_background(ingest=False)
        feed(hub, list(results(data_dir, 25)))

        def copied() -> int:
            with hub.db.connect(write=False) as conn:
                return int(conn.execute(text("SELECT count(*) FROM result_vectors")).scalar() or 0)

        wait_for(lambda: copied() == 25, 20, what="embeddings copied by the sync thread")
    finally:
        hub.stop()
