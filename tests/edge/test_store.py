"""The SQLite store: transactional writes, per-stream sequences, outbox, the size policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from waferscope.edge.alerts import AlertEngine
from waferscope.edge.store import FileRecord, Store
from waferscope.protocols import messages
from waferscope.protocols.pb import result_pb2


def result(i: int, size: int = 2000) -> result_pb2.WaferResult:
    r = result_pb2.WaferResult(
        result_id=messages.new_message_id(), device_id="edge-01", confidence=0.9
    )
    r.wafer.lot_id, r.wafer.wafer_id, r.wafer.wafer_index = "LOT", f"{i:02d}", i
    r.pattern.name = "Edge-Ring"
    r.heatmap.data = bytes(range(256)) * (size // 256)
    r.received_time.GetCurrentTime()
    return r


def record(name: str) -> FileRecord:
    return FileRecord(digest=name * 4, name=name, origin="folder", state="accepted", wafer_count=1)


def test_commit_numbers_results_and_fills_the_outbox(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.sqlite")
    alerts = AlertEngine([], "edge-01")
    batch = [result(i) for i in range(5)]
    alert = alerts.make_alert(
        rule_id="r", kind="device", severity="info", title="t", message="m", dedup_key="k"
    )
    store.commit([record("a")], [("aaaa", r) for r in batch], [alert])
    assert [r.sequence for r in batch] == [1, 2, 3, 4, 5]
    assert alert.sequence == 1
    rows = store.outbox_after(0, 100)
    assert [r.kind for r in rows] == ["result"] * 5 + ["alert"]
    assert result_pb2.WaferResult.FromString(rows[0].message).sequence == 1
    assert store.mark_published([rows[0].id, rows[5].id]) == 2
    assert store.outbox_depth() == 4
    assert store.outbox_after(rows[0].id, 100)[0].id == rows[1].id
    assert store.recent_results(10)[-1]["published"] == 1
    assert store.file_record("aaaa").state == "accepted"  # type: ignore[union-attr]
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.sqlite")
    good, dup = result(1), result(2)
    dup.result_id = good.result_id  # primary-key clash in the middle of the batch
    with pytest.raises(sqlite3.IntegrityError):
        store.commit([record("a")], [("aaaa", good), ("aaaa", dup)])
    assert store.counts() == {"results": 0, "alerts": 0, "outbox": 0, "files": 0}
    store.commit([record("a")], [("aaaa", result(3))])
    assert store.recent_results(1)[0]["sequence"] == 1  # no gap left by the failed attempt


def test_outbox_ids_never_go_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.sqlite")
    store.commit(results=[("d", result(1))])
    first = store.outbox_after(0, 10)[0].id
    store.mark_published([first])
    store.commit(results=[("d", result(2))])
    assert store.outbox_after(0, 10)[0].id > first


def test_full_store_prunes_published_and_never_unpublished(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.sqlite", max_bytes=1 << 20, prune_to=0.5)
    written = 0
    while store.ensure_room(30_000):
        store.commit(results=[("d", result(written, 20_000))])
        written += 1
    assert store.full
    assert 30 < written < 60
    assert store.used_bytes() <= store.max_bytes
    # nothing published: nothing may go
    assert store.counts()["results"] == written
    rows = store.outbox_after(0, 1000)
    store.mark_published([r.id for r in rows[:30]])  # the hub took the oldest 30
    assert store.ensure_room(30_000)
    assert not store.full
    remaining = store.recent_results(1000)
    assert len(remaining) < written
    assert all(r["published"] == 0 for r in remaining if r["sequence"] > 30)
    assert min(r["sequence"] for r in remaining) > 1  # the oldest published went first
    assert store.outbox_depth() == written - 30
    store.close()
    assert (tmp_path / "edge.sqlite").stat().st_size <= (1 << 20) + 64 * 1024
