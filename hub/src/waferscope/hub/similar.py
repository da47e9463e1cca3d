"""Similar past wafers by embedding distance (cosine), for the wafer page.

Embeddings are the engine's (edges send them unless ``mqtt.include_embedding`` is off), so only
results of the same model version are comparable. :class:`SimilarWafers` picks the backend the
database offers: on PostgreSQL with pgvector, an HNSW index inside the database
(:mod:`waferscope.hub.similar_pg`; nothing held in the hub's memory); elsewhere the bounded
in-memory index below: the newest ``max_candidates`` results of a version that carry an
embedding, loaded once into a matrix and topped up with newer rows at most every ``refresh_s``
seconds, so a query is one matrix-vector product.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Result

if TYPE_CHECKING:
    from waferscope.hub.similar_pg import PgVectorIndex

log = logging.getLogger("waferscope.hub.similar")


@dataclass(frozen=True, slots=True)
class Neighbour:
    result_id: str
    distance: float


@dataclass
class _Index:
    ids: list[str] = field(default_factory=list)
    wafers: list[str] = field(default_factory=list)
    matrix: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
    )
    newest: object = None  # ingested_at of the newest row loaded
    loaded_at: float = 0.0


def _normalise(m: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(m / norms, dtype=np.float32)


class MemoryIndex:
    """The newest ``max_candidates`` embeddings per model version, as normalised matrices."""

    def __init__(
        self, db: Database, *, max_candidates: int = 50_000, refresh_s: float = 30
    ) -> None:
        self.db = db
        self.max_candidates = max_candidates
        self.refresh_s = refresh_s
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def _load(self, model_version: str) -> _Index:
        index = self._indexes.get(model_version) or _Index()
        if index.loaded_at and time.monotonic() - index.loaded_at < self.refresh_s:
            return index
        stmt = select(
            Result.result_id, Result.wafer_ref, Result.embedding, Result.ingested_at
        ).where(Result.model_version == model_version, Result.embedding.is_not(None))
        if index.newest is not None:
            stmt = stmt.where(Result.ingested_at > index.newest)
        stmt = stmt.order_by(Result.ingested_at.desc()).limit(self.max_candidates)
        with self.db.session() as s:
            rows = s.execute(stmt).all()
        if rows:
            dim = len(rows[0].embedding) // 4
            fresh = [r for r in rows if len(r.embedding) == dim * 4]
            new = np.frombuffer(b"".join(r.embedding for r in fresh), dtype=np.float32).reshape(
                len(fresh), dim
            )
            if index.matrix.size and index.matrix.shape[1] == dim:
                matrix = np.vstack([_normalise(new), index.matrix])[: self.max_candidates]
                ids = ([r.result_id for r in fresh] + index.ids)[: self.max_candidates]
                wafers = ([r.wafer_ref for r in fresh] + index.wafers)[: self.max_candidates]
            else:
                matrix, ids, wafers = (
                    _normalise(new),
                    [r.result_id for r in fresh],
                    [r.wafer_ref for r in fresh],
                )
            index = _Index(ids, wafers, matrix, rows[0].ingested_at, time.monotonic())
        else:
            index.loaded_at = time.monotonic()
        self._indexes[model_version] = index
        return index

    def query(self, result_id: str, *, k: int = 8) -> list[Neighbour]:
        """The ``k`` nearest other wafers of the same model version (empty without embedding)."""
        with self.db.session() as s:
            row = s.execute(
                select(Result.embedding, Result.model_version, Result.wafer_ref).where(
                    Result.result_id == result_id
                )
            ).first()
        if row is None or not row.embedding:
            return []
        with self._lock:
            index = self._load(row.model_version)
        if not index.ids:
            return []
        vec = np.frombuffer(row.embedding, dtype=np.float32)
        if vec.shape[0] != index.matrix.shape[1]:
            return []
        vec = vec / (np.linalg.norm(vec) or 1.0)
        distance = 1.0 - index.matrix @ vec
        order = np.argsort(distance)
        out: list[Neighbour] = []
        for i in order:
            if index.wafers[i] == row.wafer_ref:
                continue  # the wafer itself (or another classification of it)
            out.append(Neighbour(index.ids[i], float(max(distance[i], 0.0))))
            if len(out) >= k:
                break
        return out


class SimilarWafers:
    """The ``k`` nearest past wafers of a result, from pgvector where the database has it
    (``backend`` 'pgvector'), else from the bounded in-memory index ('memory')."""

    def __init__(
        self,
        db: Database,
        *,
        max_candidates: int = 50_000,
        refresh_s: float = 30,
        backend: str = "auto",
    ) -> None:
        self.db = db
        self.max_candidates = max_candidates
        self.refresh_s = refresh_s
        self._wanted = backend
        self._impl: MemoryIndex | PgVectorIndex | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _backend(self) -> MemoryIndex | PgVectorIndex:
        if self._impl is None:
            from waferscope.hub.similar_pg import PgVectorIndex, pgvector_ready

            use_pg = self._wanted == "pgvector" or (
                self._wanted == "auto" and pgvector_ready(self.db)
            )
            self._impl = (
                PgVectorIndex(self.db, refresh_s=self.refresh_s)
                if use_pg
                else MemoryIndex(
                    self.db, max_candidates=self.max_candidates, refresh_s=self.refresh_s
                )
            )
        return self._impl

    @property
    def backend(self) -> str:
        """'pgvector' or 'memory' (decided on first use)."""
        return "memory" if isinstance(self._backend(), MemoryIndex) else "pgvector"

    def sync(self) -> int:
        """pgvector: copy new embeddings into the index table now (memory: nothing to do)."""
        impl = self._backend()
        return 0 if isinstance(impl, MemoryIndex) else impl.sync()

    def start(self) -> None:
        """pgvector: keep copying new embeddings every ``refresh_s`` in a thread, so that a
        query never pays for a long backlog (memory: nothing to do)."""
        if self.backend != "pgvector" or self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(self.refresh_s):
                try:
                    self.sync()
                except Exception:  # the next round tries again; queries sync themselves too
                    log.exception("copying embeddings into result_vectors failed")

        self._thread = threading.Thread(target=run, name="hub-similar-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def query(self, result_id: str, *, k: int = 8) -> list[Neighbour]:
        """The ``k`` nearest other wafers of the same model version (empty without embedding)."""
        return self._backend().query(result_id, k=k)
