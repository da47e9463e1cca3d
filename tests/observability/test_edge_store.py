"""The edge outbox keeps each message's traceparent; a v1 database is brought up to v2."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from waferscope.edge.store import Store
from waferscope.edge.store_schema import SCHEMA_VERSION, StoreError
from waferscope.protocols.logs import CorrelationFilter
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import alert_pb2, result_pb2

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def result() -> result_pb2.WaferResult:
    r = result_pb2.WaferResult(result_id=new_message_id(), device_id="edge-07")
    r.wafer.lot_id, r.wafer.wafer_id = "LOT1", "07"
    return r


def test_messages_keep_the_traceparent_they_were_committed_with(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.sqlite")
    traced, untraced = result(), result()
    alert = alert_pb2.Alert(alert_id=new_message_id(), device_id="edge-07")
    store.commit(
        results=[("d1", traced), ("d1", untraced)],
        alerts=[alert],
        traceparents={traced.result_id: TRACEPARENT, alert.alert_id: TRACEPARENT},
    )
    rows = {r.ref_id: r for r in store.outbox_after(0, 10)}
    assert rows[traced.result_id].traceparent == TRACEPARENT
    assert rows[alert.alert_id].traceparent == TRACEPARENT
    assert rows[untraced.result_id].traceparent == ""
    store.close()


def test_an_acknowledged_message_is_logged_with_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "edge.sqlite")
    r = result()
    store.commit(results=[("d1", r)])
    (row,) = store.outbox_after(0, 10)
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.DEBUG, logger="waferscope.edge.outbox"):
        assert store.mark_published([row.id]) == 1
    (record,) = [rec for rec in caplog.records if rec.name == "waferscope.edge.outbox"]
    assert record.result_id == r.result_id  # type: ignore[attr-defined]
    assert "acknowledged" in record.getMessage()
    assert store.outbox_depth() == 0
    store.close()


def test_a_version_1_file_gains_the_column_and_keeps_its_outbox(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    store = Store(path)
    waiting = result()
    store.commit(results=[("d1", waiting)])
    store.close()
    with sqlite3.connect(path) as conn:  # what an agent of schema v1 left behind
        conn.execute("ALTER TABLE outbox DROP COLUMN traceparent")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()

    store = Store(path)
    (row,) = store.outbox_after(0, 10)
    assert row.ref_id == waiting.result_id and row.traceparent == ""
    later = result()
    store.commit(results=[("d2", later)], traceparents={later.result_id: TRACEPARENT})
    assert store.outbox_after(row.id, 10)[0].traceparent == TRACEPARENT
    store.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert int(version[0]) == SCHEMA_VERSION


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        newer = str(SCHEMA_VERSION + 1)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (newer,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)
