"""The periodic drift job: windows per (device, model version), tests, corrections, snapshots,
alerts.

Each run finds every (device, model version) with results, takes a reference window (the first
``reference_size`` results of that model on that device, or a fixed date range) and a current
window (the newest ``current_size`` results after the reference, optionally only the last
``current_window_s``), and compares them: the predicted-class histograms with a chi-square test
(Jensen–Shannon distance and PSI reported), and the embeddings, where both windows have them,
with an MMD permutation test. The p-values of all pairs of one run are corrected together (per
kind), one snapshot row per pair is stored, and a hub alert is raised when a corrected p-value is
below ``alpha`` — once per (device, model, kind) while an earlier one is unacknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, delete, func, select

from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import AlertRow, DriftSnapshot, Result, table
from waferscope.hub.drift.config import DriftConfig
from waferscope.hub.drift.stats import CORRECTIONS, histogram_drift, mmd_test
from waferscope.hub.store.alerts import enqueue_deliveries, insert_alerts
from waferscope.protocols.messages import new_message_id

log = logging.getLogger("waferscope.hub.drift")

CLASS_RULE = "drift-classes"
EMBEDDING_RULE = "drift-embedding"
R = table(Result).c
SNAPSHOT_COLUMNS = tuple(c.name for c in table(DriftSnapshot).c if c.name != "id")
A = table(AlertRow).c


@dataclass
class Window:
    """The results of one window: class counts, time span and (some of) their embeddings."""

    counts: dict[str, int] = field(default_factory=dict)
    start: datetime | None = None
    end: datetime | None = None
    embeddings: npt.NDArray[np.float32] | None = None

    @property
    def n(self) -> int:
        return sum(self.counts.values())


def _embeddings(blobs: Sequence[bytes | None]) -> npt.NDArray[np.float32] | None:
    """The embeddings of the most common length, stacked (None when there are none)."""
    present = [b for b in blobs if b]
    if not present:
        return None
    size = Counter(len(b) for b in present).most_common(1)[0][0]
    same = [b for b in present if len(b) == size and size % 4 == 0]
    if not same:
        return None
    return np.frombuffer(b"".join(same), dtype=np.float32).reshape(len(same), size // 4)


class DriftMonitor:
    """Computes drift for every (device, model version) every ``interval_s`` (worker 0)."""

    def __init__(
        self,
        db: Database,
        config: DriftConfig,
        channels: Sequence[tuple[str, str]] = (),
        on_alert: Any = None,
    ) -> None:
        self.db = db
        self.config = config
        self.channels = list(channels)
        self.on_alert = on_alert  # called with the rule id of each alert raised
        self.last_run_s: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ windows
    def _pair_filter(self, device: str, model: str) -> list[Any]:
        return [R.device_id == device, R.model_version == model]

    def _sample_embeddings(
        self, conn: Connection, where: list[Any], start: datetime, end: datetime
    ) -> npt.NDArray[np.float32] | None:
        rows = conn.execute(
            select(R.embedding)
            .where(*where, R.embedding.is_not(None), R.classified_time.between(start, end))
            .order_by(R.classified_time.desc())
            .limit(self.config.max_samples)
        ).scalars()
        return _embeddings(list(rows))

    def reference(self, conn: Connection, device: str, model: str) -> Window:
        cfg = self.config
        where = self._pair_filter(device, model)
        if cfg.reference == "dates":
            assert cfg.reference_from is not None
            assert cfg.reference_to is not None
            rows = conn.execute(
                select(
                    R.pattern,
                    func.count(),
                    func.min(R.classified_time),
                    func.max(R.classified_time),
                )
                .where(*where, R.classified_time.between(cfg.reference_from, cfg.reference_to))
                .group_by(R.pattern)
            ).all()
            if not rows:
                return Window()
            w = Window(
                {str(p): int(n) for p, n, _, _ in rows},
                min(r[2] for r in rows),
                max(r[3] for r in rows),
            )
        else:
            rows = conn.execute(
                select(R.pattern, R.classified_time)
                .where(*where)
                .order_by(R.classified_time, R.result_id)
                .limit(cfg.reference_size)
            ).all()
            if not rows:
                return Window()
            w = Window(dict(Counter(str(r.pattern) for r in rows)), rows[0][1], rows[-1][1])
        assert w.start is not None
        assert w.end is not None
        w.embeddings = self._sample_embeddings(conn, where, w.start, w.end)
        return w

    def current(
        self, conn: Connection, device: str, model: str, after: datetime, now: datetime
    ) -> Window:
        cfg = self.config
        where = [*self._pair_filter(device, model), R.classified_time > after]
        if cfg.current_window_s is not None:
            where.append(R.classified_time >= now - timedelta(seconds=cfg.current_window_s))
        rows = conn.execute(
            select(R.pattern, R.classified_time, R.embedding)
            .where(*where)
            .order_by(R.classified_time.desc(), R.result_id.desc())
            .limit(cfg.current_size)
        ).all()
        if not rows:
            return Window()
        return Window(
            dict(Counter(str(r.pattern) for r in rows)),
            rows[-1][1],
            rows[0][1],
            _embeddings([r.embedding for r in rows[: cfg.max_samples]]),
        )

    # ------------------------------------------------------------------ one run
    def pairs(self, conn: Connection) -> list[tuple[str, str]]:
        rows = conn.execute(
            select(R.device_id, R.model_version).group_by(R.device_id, R.model_version)
        ).all()
        return sorted((str(d), str(m)) for d, m in rows)

    def _evaluate(self, conn: Connection, device: str, model: str, now: datetime) -> dict[str, Any]:
        cfg = self.config
        ref = self.reference(conn, device, model)
        row: dict[str, Any] = dict.fromkeys(SNAPSHOT_COLUMNS) | {
            "computed_at": now,
            "device_id": device,
            "model_version": model,
            "status": "insufficient",
            "reference_n": ref.n,
            "current_n": 0,
            "reference_start": ref.start,
            "reference_end": ref.end,
            "embedding_n": 0,
            "correction": cfg.correction,
        }
        if ref.end is None:
            return row
        cur = self.current(conn, device, model, ref.end, now)
        row |= {"current_n": cur.n, "current_start": cur.start, "current_end": cur.end}
        if ref.n < cfg.min_results or cur.n < cfg.min_results:
            return row
        h = histogram_drift(ref.counts, cur.counts)
        row |= {
            "status": "ok",
            "classes": list(h.classes),
            "reference_counts": list(h.reference),
            "current_counts": list(h.current),
            "chi2": h.chi2,
            "class_p": h.p_value,
            "js_distance": h.js_distance,
            "psi": h.psi,
        }
        x, y = ref.embeddings, cur.embeddings
        if (
            x is not None
            and y is not None
            and x.shape[1] == y.shape[1]
            and min(len(x), len(y)) >= cfg.min_results
        ):
            e = mmd_test(x, y, permutations=cfg.permutations, max_samples=cfg.max_samples, seed=0)
            row |= {
                "embedding_n": min(e.reference_n, e.current_n),
                "mmd2": e.mmd2,
                "mmd_p": e.p_value,
            }
        return row

    def _correct(self, rows: list[dict[str, Any]]) -> None:
        adjust = CORRECTIONS[self.config.correction]
        for raw, adjusted in (("class_p", "class_p_adjusted"), ("mmd_p", "mmd_p_adjusted")):
            tested = [r for r in rows if r.get(raw) is not None]
            for r, p in zip(tested, adjust([r[raw] for r in tested]), strict=True):
                r[adjusted] = p
        for r in rows:
            if any(
                r.get(k) is not None and r[k] < self.config.alpha
                for k in ("class_p_adjusted", "mmd_p_adjusted")
            ):
                r["status"] = "drift"

    def _open_alert(self, conn: Connection, key: str) -> bool:
        stmt = select(A.alert_id).where(A.dedup_key == key, A.acknowledged.is_(False)).limit(1)
        return conn.execute(stmt).first() is not None

    def _alerts(
        self, conn: Connection, rows: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        cfg = self.config
        out = []
        for r in rows:
            for rule, kind, p_key, what in (
                (CLASS_RULE, "classes", "class_p_adjusted", "predicted-class mix"),
                (EMBEDDING_RULE, "embedding", "mmd_p_adjusted", "embedding distribution"),
            ):
                p = r.get(p_key)
                if p is None or p >= cfg.alpha:
                    continue
                key = f"drift:{kind}:{r['device_id']}:{r['model_version']}"
                if self._open_alert(conn, key):
                    continue
                figures = (
                    f"PSI {r['psi']:.3f}, Jensen–Shannon {r['js_distance']:.3f}"
                    if kind == "classes"
                    else f"MMD² {r['mmd2']:.4f} on {r['embedding_n']} embeddings per window"
                )
                out.append(
                    {
                        "alert_id": new_message_id(),
                        "source": "hub",
                        "device_id": r["device_id"][:64],
                        "sequence": 0,
                        "rule_id": rule,
                        "rule_kind": "drift",
                        "severity": cfg.severity,
                        "title": f"Drift in the {what} of {r['model_version']} on {r['device_id']}"[
                            :255
                        ],
                        "message": f"{r['device_id']} / {r['model_version']}: the {what} of the "
                        f"newest {r['current_n']} results differs from the reference window of "
                        f"{r['reference_n']} (corrected p = {p:.2g} < {cfg.alpha}, "
                        f"{cfg.correction}); {figures}. See /ui/drift.",
                        "raised_time": now,
                        "ingested_at": now,
                        "pattern": "",
                        "tester_id": "",
                        "lot_id": "",
                        "wafer_id": "",
                        "related_result_ids": None,
                        "dedup_key": key,
                        "acknowledged": False,
                    }
                )
        return out

    def run_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate every pair, store the snapshots, raise alerts; return the snapshot rows."""
        started = time.perf_counter()
        now = now or utcnow()
        with self.db.connect(write=False) as conn:
            rows = [self._evaluate(conn, d, m, now) for d, m in self.pairs(conn)]
        self._correct(rows)
        with self.db.connect() as conn:
            if rows:
                conn.execute(table(DriftSnapshot).insert(), rows)
            conn.execute(
                delete(DriftSnapshot).where(
                    DriftSnapshot.computed_at < now - timedelta(days=self.config.keep_days)
                )
            )
            alerts = self._alerts(conn, rows, now)
            new = insert_alerts(conn, alerts)
            fresh = [
                (str(a["alert_id"]), str(a["severity"])) for a in alerts if a["alert_id"] in new
            ]
            if fresh and self.channels:
                enqueue_deliveries(conn, fresh, self.channels)
        for a in alerts:
            if a["alert_id"] in new:
                log.warning("drift alert: %s", a["title"])
                if self.on_alert is not None:
                    self.on_alert(a["rule_id"])
        self.last_run_s = time.perf_counter() - started
        return rows

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                self.run_once()
            except Exception:  # a failed run must not end the job
                log.exception("drift run failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
