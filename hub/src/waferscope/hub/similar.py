"""Similar past wafers by embedding distance (cosine), for the wafer page.

Embeddings are the engine's (sent by edges configured to send them), so only results of the same
model version are comparable. The candidates are the newest ``max_candidates`` results of that
version that carry an embedding; they are loaded once into a matrix and topped up with newer rows
at most every ``refresh_s`` seconds, so a query is one matrix-vector product.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Result


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


class SimilarWafers:
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
