"""The edge database's tables (created with sqlite-utils; versioned in the ``meta`` table).

Versions: 1 the first; 2 adds ``outbox.traceparent`` (the W3C trace context of the wafer a
message belongs to); 3 adds ``releases`` (every signed release the edge accepted, its slot and
state: the highest version guards against rollback and replay; ``deploy_commands``: the deploy
commands already executed); 4 adds ``labels`` (ground-truth labels of this edge's wafers: a
reviewer's label sent back by the hub, or an operator's confirmation at the panel, with the
wafer's map copied in so the label outlives the pruning of its result; the federated client's
training data). A file of an older version is
brought up to date when it is opened (new columns and tables are added, existing rows keep empty
values); a file of a newer version is refused.
"""

from __future__ import annotations

import sqlite_utils

from waferscope.protocols.errors import WaferscopeError

SCHEMA_VERSION = 4


class StoreError(WaferscopeError):
    """The edge database cannot be used (newer schema, unreadable file)."""


def create_schema(db: sqlite_utils.Database) -> None:
    """Create missing tables and indexes; refuse a database from a newer agent."""
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)  # type: ignore[union-attr]
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{db.conn}: database schema v{row[0]} is newer than this agent's v{SCHEMA_VERSION}"
        )
    db["counters"].create({"stream": str, "value": int}, pk="stream", if_not_exists=True)  # type: ignore[union-attr]
    db["files"].create(  # type: ignore[union-attr]
        {
            "digest": str,
            "name": str,
            "origin": str,
            "state": str,
            "wafer_count": int,
            "rejected_count": int,
            "error_code": str,
            "error_message": str,
            "correlation_id": str,
            "received_at": float,
        },
        pk="digest",
        not_null={"name", "origin", "state"},
        if_not_exists=True,
    )
    db["results"].create(  # type: ignore[union-attr]
        {
            "result_id": str,
            "sequence": int,
            "file_digest": str,
            "wafer_index": int,
            "received_at": float,
            "stored_at": float,
            "lot_id": str,
            "wafer_id": str,
            "tester_id": str,
            "source_name": str,
            "pattern": str,
            "confidence": float,
            "review": int,
            "review_reason": str,
            "cause": str,
            "die_count": int,
            "fail_count": int,
            "model_version": str,
            "message": bytes,
            "published": int,
            "published_at": float,
        },
        pk="result_id",
        not_null={"sequence", "message"},
        defaults={"published": 0},
        if_not_exists=True,
    )
    db["alerts"].create(  # type: ignore[union-attr]
        {
            "alert_id": str,
            "sequence": int,
            "rule_id": str,
            "rule_kind": str,
            "severity": int,
            "title": str,
            "body": str,
            "raised_at": float,
            "tester_id": str,
            "pattern": str,
            "dedup_key": str,
            "message": bytes,
            "published": int,
            "published_at": float,
            "acknowledged": int,
            "acknowledged_by": str,
            "acknowledged_at": float,
        },
        pk="alert_id",
        not_null={"sequence", "message"},
        defaults={"published": 0, "acknowledged": 0},
        if_not_exists=True,
    )
    db["releases"].create(  # type: ignore[union-attr]
        {
            "version": int,
            "digest": str,
            "channel": str,
            "model_version": str,
            "slot": str,
            "state": str,
            "detail": str,
            "accepted_at": float,
            "updated_at": float,
        },
        pk="version",
        not_null={"digest", "state"},
        if_not_exists=True,
    )
    db["deploy_commands"].create(  # type: ignore[union-attr]
        {"command_id": str, "status": str, "received_at": float},
        pk="command_id",
        if_not_exists=True,
    )
    db["labels"].create(  # type: ignore[union-attr]
        {
            "result_id": str,
            "label_id": str,
            "pattern": str,
            "root_cause": str,
            "action": str,
            "labelled_by": str,
            "source": str,
            "labelled_at": float,
            "received_at": float,
            "lot_id": str,
            "wafer_id": str,
            "map": bytes,
        },
        pk="result_id",
        not_null={"label_id", "pattern", "source"},
        if_not_exists=True,
    )
    # AUTOINCREMENT: outbox ids never go back, even when the outbox has been emptied (the
    # publisher remembers the last id it handed to the MQTT client).
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " kind TEXT NOT NULL, ref_id TEXT NOT NULL, created_at REAL, traceparent TEXT)"
    )
    _migrate(db)
    for table, columns, unique in (
        ("results", ["sequence"], True),
        ("results", ["published", "sequence"], False),
        ("results", ["file_digest"], False),
        ("results", ["tester_id", "sequence"], False),
        ("alerts", ["sequence"], True),
        ("outbox", ["kind", "ref_id"], True),
    ):
        db[table].create_index(columns, unique=unique, if_not_exists=True)  # type: ignore[union-attr]
    db.execute(
        "INSERT OR IGNORE INTO counters (stream, value)"
        " VALUES ('result', 0), ('alert', 0), ('deploy_ack', 0)"
    )
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
        [str(SCHEMA_VERSION)],
    )


def _migrate(db: sqlite_utils.Database) -> None:
    """Bring the tables of an older file up to this version (each step is idempotent)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)").fetchall()}
    if "traceparent" not in columns:  # v1 -> v2
        db.execute("ALTER TABLE outbox ADD COLUMN traceparent TEXT")
