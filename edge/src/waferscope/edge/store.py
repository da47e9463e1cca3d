"""The edge's local buffer: one SQLite file (WAL) with results, heatmaps, alerts and the outbox.

Everything a wafer produces is written in one transaction together with the record of the file
it came from, so after a crash a file is either fully recorded (and is not processed again) or
not at all (and is processed again from scratch). Results and alerts are numbered per stream
(1, 2, 3, ... never reused, no gaps) inside that transaction.

Size policy (``store.max_bytes``): the used size is the database's pages in use. Results may use
up to ``max_bytes`` less a 64 KiB reserve kept for alerts. Before new results are written, when
they would not fit, the oldest *published* results are pruned (then
published, acknowledged alerts) until the database is down to ``prune_to`` x ``max_bytes``; the
freed pages go back to the file system (incremental vacuum). Unpublished results and alerts are
never pruned: when nothing else can go, :meth:`Store.ensure_room` answers False, ingest pauses
and a ``store_full`` alert is raised; it resumes when publishing has let pruning bring the
database below ``prune_to`` x ``max_bytes`` again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from waferscope.edge.store_schema import SCHEMA_VERSION, create_schema
from waferscope.protocols.logs import correlation
from waferscope.protocols.pb import alert_pb2, result_pb2
from waferscope.protocols.tracing import within

log = logging.getLogger("waferscope.edge.outbox")

ALERT_RESERVE = 64 * 1024
"""Bytes below ``max_bytes`` that results may not use, so alerts (store full!) always fit."""
PAGE = 4096


def estimated_bytes(message_sizes: Iterable[int]) -> int:
    """Pages a batch of results will take: each row's message spills into overflow pages of
    about a page each, plus its index entries and its outbox row."""
    return sum((size // (PAGE - 100) + 1) * PAGE + 512 for size in message_sizes)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One ingested file (hot folder or gRPC), keyed by the SHA-256 of its bytes."""

    digest: str
    name: str
    origin: str  # "folder" | "grpc"
    state: str  # "accepted" | "rejected" | "moved"
    wafer_count: int = 0
    rejected_count: int = 0
    error_code: str = ""
    error_message: str = ""
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str  # "result" | "alert"
    ref_id: str
    message: bytes  # binary protobuf (WaferResult or Alert)
    traceparent: str = ""  # W3C trace context of the wafer it belongs to ("" when untraced)
    created_at: float = 0.0  # wall-clock time (epoch s) of the transaction that stored it


class Store:
    """Thread-safe access to the edge database (one writer connection, readers per thread)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1 << 30,
        prune_to: float = 0.9,
        synchronous: str = "FULL",
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.prune_to = prune_to
        self._lock = threading.RLock()
        self._local = threading.local()
        self._synchronous = synchronous.upper()
        self._conn = self._connect(self._synchronous)
        create_schema(sqlite_utils.Database(self._conn))
        self.full = False

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only on a new file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA journal_size_limit=8388608")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (rows as :class:`sqlite3.Row`)."""
        return self._reader()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA query_only=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False`` skips the sync to disk at commit (WAL keeps
        the database consistent; the next durable commit syncs these changes too): for
        bookkeeping whose loss on power failure is harmless, such as marking messages published
        (they would be sent again, and the hub drops repeats by id)."""
        with self._lock:
            relaxed = not durable and self._synchronous == "FULL"
            if relaxed:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if relaxed:
                    self._conn.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _next(conn: sqlite3.Connection, stream: str) -> int:
        row = conn.execute(
            "UPDATE counters SET value = value + 1 WHERE stream = ? RETURNING value", (stream,)
        ).fetchone()
        return int(row[0])

    def commit(
        self,
        files: Iterable[FileRecord] = (),
        results: Iterable[tuple[str, result_pb2.WaferResult]] = (),
        alerts: Iterable[alert_pb2.Alert] = (),
        traceparents: Mapping[str, str] | None = None,
    ) -> None:
        """Write file records, results (with their file digest) and alerts in one transaction.

        Each result and alert gets its sequence number here (the messages are updated in place)
        and a row in the outbox, with the traceparent ``traceparents`` names for its id.
        """
        now = time.time()
        tp = traceparents or {}
        with self.transaction() as conn:
            for f in files:
                conn.execute(
                    "INSERT INTO files (digest, name, origin, state, wafer_count, rejected_count,"
                    " error_code, error_message, correlation_id, received_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        f.digest,
                        f.name,
                        f.origin,
                        f.state,
                        f.wafer_count,
                        f.rejected_count,
                        f.error_code,
                        f.error_message,
                        f.correlation_id,
                        now,
                    ),
                )
            for digest, result in results:
                result.sequence = self._next(conn, "result")
                self._insert_result(conn, digest, result, now, tp.get(result.result_id))
            for alert in alerts:
                self._insert_alert(conn, alert, now, tp.get(alert.alert_id))

    def add_alerts(self, alerts: Iterable[alert_pb2.Alert]) -> None:
        self.commit(alerts=alerts)

    def _insert_result(
        self,
        conn: sqlite3.Connection,
        digest: str,
        r: result_pb2.WaferResult,
        now: float,
        traceparent: str | None = None,
    ) -> None:
        w = r.wafer
        conn.execute(
            "INSERT INTO results (result_id, sequence, file_digest, wafer_index, received_at,"
            " stored_at, lot_id, wafer_id, tester_id, source_name, pattern, confidence, review,"
            " review_reason, cause, die_count, fail_count, model_version, message)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                r.result_id,
                r.sequence,
                digest,
                w.wafer_index,
                r.received_time.ToMilliseconds() / 1e3,
                now,
                w.lot_id,
                w.wafer_id,
                w.tester_id,
                w.source_name,
                r.pattern.name,
                r.confidence,
                int(r.review_required),
                result_pb2.ReviewReason.Name(r.review_reason),
                r.root_cause.name,
                r.die_count,
                r.fail_count,
                r.model_version,
                r.SerializeToString(),
            ),
        )
        conn.execute(
            "INSERT INTO outbox (kind, ref_id, created_at, traceparent) VALUES ('result', ?, ?, ?)",
            (r.result_id, now, traceparent),
        )

    def _insert_alert(
        self,
        conn: sqlite3.Connection,
        a: alert_pb2.Alert,
        now: float,
        traceparent: str | None = None,
    ) -> None:
        a.sequence = self._next(conn, "alert")
        conn.execute(
            "INSERT INTO alerts (alert_id, sequence, rule_id, rule_kind, severity, title, body,"
            " raised_at, tester_id, pattern, dedup_key, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                a.alert_id,
                a.sequence,
                a.rule_id,
                a.rule_kind,
                a.severity,
                a.title,
                a.message,
                now,
                a.tester_id,
                a.pattern,
                a.dedup_key,
                a.SerializeToString(),
            ),
        )
        conn.execute(
            "INSERT INTO outbox (kind, ref_id, created_at, traceparent) VALUES ('alert', ?, ?, ?)",
            (a.alert_id, now, traceparent),
        )

    def set_file_state(self, digest: str, state: str) -> None:
        """Bookkeeping after a file was moved; losing it on power failure is harmless (the
        file is no longer in the folder, and a record still 'accepted' only finishes a move)."""
        with self.transaction(durable=False) as conn:
            conn.execute("UPDATE files SET state = ? WHERE digest = ?", (state, digest))

    def acknowledge(self, alert_id: str, by: str) -> bool:
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE alerts SET acknowledged = 1, acknowledged_by = ?, acknowledged_at = ?"
                " WHERE alert_id = ? AND acknowledged = 0",
                (by, time.time(), alert_id),
            )
            return cur.rowcount > 0

    # ------------------------------------------------------------------ outbox
    def outbox_after(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Unpublished messages with an outbox id above ``after_id``, oldest first."""
        rows = (
            self._reader()
            .execute(
                "SELECT o.id, o.kind, o.ref_id, COALESCE(r.message, a.message) AS message,"
                " o.traceparent, o.created_at"
                " FROM outbox o"
                " LEFT JOIN results r ON o.kind = 'result' AND r.result_id = o.ref_id"
                " LEFT JOIN alerts a ON o.kind = 'alert' AND a.alert_id = o.ref_id"
                " WHERE o.id > ? ORDER BY o.id LIMIT ?",
                (after_id, limit),
            )
            .fetchall()
        )
        return [
            OutboxRow(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), r[4] or "", float(r[5] or 0))
            for r in rows
        ]

    def mark_published(self, outbox_ids: Iterable[int]) -> int:
        ids = list(outbox_ids)
        if not ids:
            return 0
        now = time.time()
        with self.transaction(durable=False) as conn:
            marks = ",".join("?" * len(ids))
            for kind, table, key in (
                ("result", "results", "result_id"),
                ("alert", "alerts", "alert_id"),
            ):
                conn.execute(
                    f"UPDATE {table} SET published = 1, published_at = ? WHERE {key} IN"
                    f" (SELECT ref_id FROM outbox WHERE kind = ? AND id IN ({marks}))",
                    (now, kind, *ids),
                )
            gone = conn.execute(
                f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING kind, ref_id, traceparent",
                ids,
            ).fetchall()
        if log.isEnabledFor(logging.DEBUG):
            for kind, ref_id, traceparent in gone:
                key = "result_id" if kind == "result" else "message_id"
                with correlation(**{key: ref_id}), within(traceparent):
                    log.debug("%s acknowledged by the broker: out of the outbox", kind)
        if self.full:
            self.full = not self.ensure_room(0)
        return len(gone)

    def outbox_depth(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_oldest(self) -> float | None:
        row = self._reader().execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    # ------------------------------------------------------------------ size policy
    def used_bytes(self) -> int:
        conn = self._reader()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total

    def ensure_room(self, needed: int) -> bool:
        """Make room for ``needed`` more bytes by pruning published data; False when full.

        Once full, the store reports room again only below the low-water mark
        (``prune_to`` x ``max_bytes``), so ingest does not flap at the limit.
        """
        low_water = int(self.max_bytes * self.prune_to)
        limit = low_water if self.full else self.max_bytes - ALERT_RESERVE
        if self.used_bytes() + needed <= limit:
            self.full = False
            return True
        self.prune(max(0, low_water - needed))
        room = self.used_bytes() + needed <= limit
        self.full = not room
        return room

    def prune(self, target_bytes: int) -> int:
        """Delete the oldest published results, then published acknowledged alerts, until the
        used size is at most ``target_bytes`` or nothing prunable is left. Returns rows deleted."""
        deleted = 0
        steps = (
            "DELETE FROM results WHERE result_id IN (SELECT result_id FROM results"
            " WHERE published = 1 ORDER BY sequence LIMIT 200)",
            "DELETE FROM alerts WHERE alert_id IN (SELECT alert_id FROM alerts"
            " WHERE published = 1 AND acknowledged = 1 ORDER BY sequence LIMIT 200)",
        )
        for sql in steps:
            while self.used_bytes() > target_bytes:
                with self.transaction() as conn:
                    n = conn.execute(sql).rowcount
                deleted += n
                if n == 0:
                    break
                with self._lock:
                    self._conn.execute("PRAGMA incremental_vacuum")
        if deleted:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    # ------------------------------------------------------------------ reading
    def file_record(self, digest: str) -> FileRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT digest, name, origin, state, wafer_count, rejected_count, error_code,"
                " error_message, correlation_id FROM files WHERE digest = ?",
                (digest,),
            )
            .fetchone()
        )
        return None if row is None else FileRecord(*row)

    def results_of_file(self, digest: str) -> list[result_pb2.WaferResult]:
        """The stored results of one file, in wafer order (pruned ones are missing)."""
        rows = (
            self._reader()
            .execute(
                "SELECT message FROM results WHERE file_digest = ? ORDER BY wafer_index", (digest,)
            )
            .fetchall()
        )
        return [result_pb2.WaferResult.FromString(r[0]) for r in rows]

    def result(self, result_id: str) -> tuple[dict[str, Any], result_pb2.WaferResult] | None:
        row = (
            self._reader()
            .execute("SELECT * FROM results WHERE result_id = ?", (result_id,))
            .fetchone()
        )
        if row is None:
            return None
        message = result_pb2.WaferResult.FromString(row["message"])
        meta = {k: row[k] for k in row.keys() if k != "message"}  # noqa: SIM118
        return meta, message

    def recent_results(self, limit: int = 50, tester_id: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT result_id, sequence, received_at, stored_at, lot_id, wafer_id, tester_id,"
            " source_name, wafer_index, pattern, confidence, review, review_reason, cause,"
            " die_count, fail_count, model_version, published FROM results"
        )
        args: tuple[Any, ...] = ()
        if tester_id is not None:
            sql += " WHERE tester_id = ?"
            args = (tester_id,)
        rows = self._reader().execute(sql + " ORDER BY sequence DESC LIMIT ?", (*args, limit))
        return [dict(r) for r in rows.fetchall()]

    def alerts(self, *, active_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        where = " WHERE acknowledged = 0" if active_only else ""
        rows = self._reader().execute(
            "SELECT alert_id, sequence, rule_id, rule_kind, severity, title, body, raised_at,"
            " tester_id, pattern, acknowledged, acknowledged_by, acknowledged_at, published"
            f" FROM alerts{where} ORDER BY sequence DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows.fetchall()]

    def counts(self) -> dict[str, int]:
        conn = self._reader()
        return {
            "results": int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]),
            "alerts": int(conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]),
            "outbox": self.outbox_depth(),
            "files": int(conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]),
        }

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION
