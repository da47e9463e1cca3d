"""Similar-wafer search in PostgreSQL with pgvector: embeddings copied into ``result_vectors``
(a ``vector`` column) and searched through an HNSW index with cosine distance.

Migration 0003 creates ``result_vectors`` where the ``vector`` extension is available. Results
keep their embedding as float32 bytes (the portable column); :meth:`PgVectorIndex.sync` copies
the new ones into ``result_vectors`` (newest ``ingested_at`` first seen, with a look-back margin
for batches that commit late; already copied rows are skipped). An HNSW index per embedding
length is a partial expression index (``embedding::vector(d)`` where ``dims = d``), created the
first time that length is seen. A query is one ``ORDER BY embedding <=> q LIMIT k`` filtered by
model version, with pgvector's iterative index scan so that the filter does not starve it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, TextClause, select, text

from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Result, table
from waferscope.hub.similar import Neighbour

log = logging.getLogger("waferscope.hub.similar")

R = table(Result).c
LOOK_BACK = timedelta(minutes=5)  # batches of several ingest workers commit out of order
SYNC_BATCH = 5000
ANALYZE_AFTER = 1000  # rows copied in one sync


def pgvector_ready(db: Database) -> bool:
    """Whether this database is PostgreSQL with the ``result_vectors`` table (pgvector)."""
    if db.dialect != "postgresql":
        return False
    with db.connect(write=False) as conn:
        return conn.execute(text("SELECT to_regclass('result_vectors')")).scalar() is not None


def search_sql(dims: int) -> TextClause:
    """The k-nearest query for one embedding length. ``dims`` is a literal, not a parameter: the
    planner can only use the partial index ``WHERE dims = d`` when it sees the value, and a
    prepared statement's generic plan would not."""
    d = int(dims)
    return text(
        f"SELECT result_id, wafer_ref, embedding::vector({d}) <=> CAST(:q AS vector({d})) "
        f"AS distance FROM result_vectors WHERE dims = {d} AND model_version = :m "
        f"AND wafer_ref <> :w ORDER BY embedding::vector({d}) <=> CAST(:q AS vector({d})) "
        "LIMIT :k"
    )


def vector_text(blob: bytes) -> str:
    """float32 bytes as pgvector's text form ``[a,b,...]``."""
    values = np.frombuffer(blob, dtype=np.float32)
    return "[" + ",".join(f"{v:.7g}" for v in values.tolist()) + "]"


class PgVectorIndex:
    def __init__(self, db: Database, *, refresh_s: float = 30, ef_search: int = 100) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self.ef_search = ef_search
        self._synced_at = 0.0
        self._indexed_dims: set[int] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ copying
    def _ensure_index(self, conn: Connection, dims: int) -> None:
        if dims in self._indexed_dims:
            return
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_result_vectors_hnsw_{dims} ON result_vectors "
                f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims}"
            )
        )
        self._indexed_dims.add(dims)

    def _copy_batch(
        self, since: datetime | None, last: tuple[datetime, str] | None
    ) -> tuple[int, tuple[datetime, str] | None, set[int]]:
        stmt = select(R.result_id, R.wafer_ref, R.model_version, R.ingested_at, R.embedding).where(
            R.embedding.is_not(None)
        )
        if since is not None:
            stmt = stmt.where(R.ingested_at >= since)
        if last is not None:
            stmt = stmt.where(
                (R.ingested_at > last[0]) | ((R.ingested_at == last[0]) & (R.result_id > last[1]))
            )
        with self.db.connect() as conn:
            rows = conn.execute(stmt.order_by(R.ingested_at, R.result_id).limit(SYNC_BATCH)).all()
            if not rows:
                return 0, None, set()
            batch = [
                {
                    "id": r.result_id,
                    "m": r.model_version,
                    "w": r.wafer_ref,
                    "d": len(r.embedding) // 4,
                    "t": r.ingested_at,
                    "v": vector_text(r.embedding),
                }
                for r in rows
                if r.embedding and len(r.embedding) % 4 == 0
            ]
            copied = 0
            if batch:
                result = conn.execute(
                    text(
                        "INSERT INTO result_vectors (result_id, model_version, wafer_ref, dims, "
                        "ingested_at, embedding) VALUES (:id, :m, :w, :d, :t, CAST(:v AS vector)) "
                        "ON CONFLICT (result_id) DO NOTHING"
                    ),
                    batch,
                )
                copied = max(result.rowcount, 0)
        return copied, (rows[-1].ingested_at, rows[-1].result_id), {b["d"] for b in batch}

    def sync(self) -> int:
        """Copy embeddings not yet in ``result_vectors`` (in batches, each its own transaction),
        then make sure each embedding length has its HNSW index; return how many were copied."""
        with self._lock:
            with self.db.connect(write=False) as conn:
                mark: datetime | None = conn.execute(
                    text("SELECT max(ingested_at) FROM result_vectors")
                ).scalar()
                dims_seen: set[int] = set()
                if not self._indexed_dims:  # first sync of this process: indexes of old rows
                    known = conn.execute(text("SELECT DISTINCT dims FROM result_vectors"))
                    dims_seen = {int(d) for d in known.scalars()}
            since = mark - LOOK_BACK if mark is not None else None
            copied, last = 0, None
            while True:
                n, last, dims = self._copy_batch(since, last)
                copied += n
                dims_seen |= dims
                if last is None:
                    break
            new_dims = dims_seen - self._indexed_dims
            if new_dims or copied >= ANALYZE_AFTER:
                with self.db.connect() as conn:
                    for d in sorted(new_dims):
                        self._ensure_index(conn, d)
                    # fresh statistics, or the planner takes the btree for selective and scans
                    # every embedding of the model version instead of walking the HNSW graph
                    conn.execute(text("ANALYZE result_vectors"))
            self._synced_at = time.monotonic()
        return copied

    # ------------------------------------------------------------------ search
    def query(self, result_id: str, *, k: int = 8) -> list[Neighbour]:
        if time.monotonic() - self._synced_at >= self.refresh_s:
            self.sync()
        with self.db.connect(write=False) as conn:
            row = conn.execute(
                text(
                    "SELECT model_version, wafer_ref, dims, embedding::text AS q "
                    "FROM result_vectors WHERE result_id = :id"
                ),
                {"id": result_id},
            ).first()
            if row is None:
                return []
            dims = int(row.dims)
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, 2 * k)}"))
            conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            found = conn.execute(
                search_sql(dims),
                {"q": row.q, "m": row.model_version, "w": row.wafer_ref, "k": k},
            ).all()
        # relaxed order: the index returns nearly sorted rows; sort the k exactly
        return sorted(
            (Neighbour(r.result_id, max(float(r.distance), 0.0)) for r in found),
            key=lambda n: n.distance,
        )
