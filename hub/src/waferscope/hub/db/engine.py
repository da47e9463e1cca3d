"""Opening the hub database: one SQLAlchemy engine per process, tuned per dialect."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from waferscope.hub.config import DatabaseConfig


def utcnow() -> datetime:
    """Now as the naive UTC datetime every table stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


class Database:
    """The engine, a session factory and the dialect name of one hub database."""

    def __init__(self, url: str, settings: DatabaseConfig | None = None) -> None:
        self.settings = settings or DatabaseConfig()
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": self.settings.echo, "future": True}
        self._write_lock_path: str | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self._write_lock_path = parsed.database + ".writelock"
            kwargs["connect_args"] = {
                "timeout": self.settings.busy_timeout_s,
                "check_same_thread": False,
                "isolation_level": None,  # we issue BEGIN ourselves (see _sqlite_begin)
            }
        else:
            kwargs["pool_size"] = self.settings.pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            self._tune_sqlite()
        # Writers start with BEGIN IMMEDIATE on SQLite (see _sqlite_begin); readers do not.
        self.writer: Engine = self.engine.execution_options(hub_writer=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(self.writer, expire_on_commit=False)

    def _tune_sqlite(self) -> None:
        synchronous = self.settings.sqlite_synchronous
        busy_ms = int(self.settings.busy_timeout_s * 1000)

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            # Checkpoints run in a background thread (start_checkpointer), not in the commit of
            # whichever writer crosses the threshold; this is the backstop if none runs.
            cur.execute("PRAGMA wal_autocheckpoint=20000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # A writer takes the write lock at the start (BEGIN IMMEDIATE), so two writers queue
            # on the busy timeout instead of failing when a read snapshot cannot be upgraded.
            immediate = conn.get_execution_options().get("hub_writer", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @contextmanager
    def _writing(self, write: bool) -> Iterator[None]:
        """On a SQLite file, writers of every process queue on one advisory file lock.

        SQLite's own busy handler polls with sleeps of up to 100 ms, which stalls several ingest
        workers that share a file; a blocking ``flock`` hands the lock over as soon as it is free.
        """
        if not write or self._write_lock_path is None:
            yield
            return
        fd = os.open(self._write_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back on error.

        Pass ``write=True`` for a transaction that changes rows.
        """
        factory = self.write_sessions if write else self.sessions
        with self._writing(write), factory.begin() as s:
            yield s

    @contextmanager
    def connect(self, *, write: bool = True) -> Iterator[Connection]:
        """A Core connection in a transaction (the ingest's fast path)."""
        with self._writing(write), (self.writer if write else self.engine).begin() as conn:
            yield conn

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """SQLite: copy the WAL into the database file every ``interval_s`` in a thread of its
        own (PASSIVE: never blocks readers or writers), so commits do not pay for it."""
        if self.dialect != "sqlite" or self._checkpointer is not None:
            return

        def run() -> None:
            while not self._closing.wait(interval_s):
                try:
                    with self.engine.connect() as conn:
                        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # a busy or closing database: try again next round
                    continue

        self._checkpointer = threading.Thread(target=run, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # readiness probe: any failure means "not ready"
            return False

    def dispose(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
        self.engine.dispose()
