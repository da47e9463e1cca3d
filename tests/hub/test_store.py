"""Storage contract: every test runs on SQLite and on PostgreSQL (the ``database`` fixture)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hub_data import make_result, real_grids, results
from sqlalchemy import func, inspect, select

from waferscope.hub.blobs import DirectoryBlobStore
from waferscope.hub.config import ReviewConfig
from waferscope.hub.db import migrate, schema
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import (
    AlertRow,
    AuditEntry,
    Base,
    DeadLetter,
    Device,
    Label,
    Result,
    ReviewItem,
    Wafer,
)
from waferscope.hub.ingest.handler import stored_result_rows
from waferscope.hub.mapcodec import decode_heatmap, decode_map
from waferscope.hub.review_policy import UncertaintyFirst
from waferscope.hub.store import alerts as alert_store
from waferscope.hub.store import queries, review, users
from waferscope.hub.store.ingest import (
    Batch,
    alert_row,
    dead_letter_row,
    write_batch,
)
from waferscope.protocols import messages
from waferscope.protocols.pb import alert_pb2, common_pb2, device_pb2
from waferscope.protocols.pb.device_pb2 import DeviceBirth, DeviceStatus

SELECTOR = UncertaintyFirst(ReviewConfig(threshold=0.6, sample_rate=0.1))


def ingest(db: Database, blobs: DirectoryBlobStore, msgs: list, **batch: object) -> set[str]:
    now = utcnow()
    rows = [stored_result_rows(m, blobs=blobs, selector=SELECTOR, now=now) for m in msgs]
    with db.connect() as conn:
        return write_batch(conn, Batch(results=rows, **batch)).new_results  # type: ignore[arg-type]


def count(db: Database, model: type[Base]) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_migrations_match_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        migrate.upgrade(db.engine)
        assert migrate.is_current(db.engine)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={  # the pgvector table exists only on PostgreSQL with the extension
                    "include_name": lambda name, kind, _: (
                        kind != "table" or name not in schema.PG_VECTOR_TABLES
                    )
                },
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        names = set(inspect(db.engine).get_table_names())
        assert {"results", "wafers", "review_queue", "labels", "alerts", "audit_log"} <= names
        migrate.downgrade(db.engine, "base")
        assert "results" not in inspect(db.engine).get_table_names()
        migrate.upgrade(db.engine)
        assert migrate.is_current(db.engine)
    finally:
        db.dispose()


def test_results_are_stored_once_whatever_the_redeliveries(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    msgs = list(results(data_dir, 40))
    assert len(ingest(database, blob_dir, msgs)) == 40
    # the same messages again, and a batch holding one message twice
    assert ingest(database, blob_dir, msgs[:10]) == set()
    assert ingest(database, blob_dir, [msgs[3], msgs[3]]) == set()
    assert count(database, Result) == 40
    assert count(database, Wafer) == 40
    with database.session() as s:
        device = s.get(Device, "edge-01")
        assert device is not None and device.result_sequence_max == 40
        assert s.scalar(select(func.count()).select_from(schema.Tester)) == 1


def test_stored_map_and_heatmap_round_trip(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    ((grid, label),) = real_grids(data_dir, 1, start=5)
    msg = make_result(grid, label, 5)
    ingest(database, blob_dir, [msg])
    with database.session() as s:
        detail = queries.wafer_detail(s, msg.result_id)
        assert detail is not None
        assert detail.wafer.map_blob is not None and detail.heatmap is not None
        compact = decode_map(blob_dir.get(detail.wafer.map_blob))
        assert np.array_equal(messages.unpack_states(compact), grid)
        rows, cols, data = decode_heatmap(blob_dir.get(detail.heatmap.blob))
        assert (rows, cols, data) == (64, 64, msg.heatmap.data)
        r = detail.result
        assert r.pattern == msg.pattern.name
        assert r.confidence == pytest.approx(msg.confidence)
        assert r.probabilities is not None and len(r.probabilities["pattern"]) == 9
        assert r.embedding is not None
        assert np.allclose(np.frombuffer(r.embedding, np.float32), list(msg.embedding))
        assert detail.wafer.lot_id == msg.wafer.lot_id and r.tester_id == "T-01"


def test_queue_is_uncertainty_first(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    grids = real_grids(data_dir, 4)
    low = make_result(*grids[0], 0, confidence=0.30)
    lower = make_result(*grids[1], 1, confidence=0.20)
    flagged = make_result(*grids[2], 2, confidence=0.95)
    flagged.review_required = True
    flagged.review_reason = 4
    sure = make_result(*grids[3], 3, confidence=0.99)
    ingest(database, blob_dir, [low, lower, flagged, sure])
    with database.session() as s:
        order = [q.result.result_id for q in queries.list_queue(s)]
        assert order[:3] == [lower.result_id, low.result_id, flagged.result_id]
        assert queries.queue_counts(s)["low_confidence"] == 2
        assert queries.next_in_queue(s) == lower.result_id


def test_review_sets_the_label_and_leaves_the_queue(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    ((grid, label),) = real_grids(data_dir, 1)
    msg = make_result(grid, label, 0, confidence=0.3, pattern="Loc")
    ingest(database, blob_dir, [msg])
    with database.session(write=True) as s:
        out = review.submit_review(
            s, msg.result_id, reviewer="reviewer1", pattern="Center", comment="clear centre blob"
        )
        assert out.action == "correct" and out.changed
    with database.session(write=True) as s:
        out2 = review.submit_review(s, msg.result_id, reviewer="reviewer1", pattern="Center")
        assert not out2.changed
    with database.session() as s:
        item = s.get(ReviewItem, msg.result_id)
        assert item is not None and item.state == "done" and item.closed_by == "reviewer1"
        lab = s.scalar(select(Label))
        assert lab is not None and lab.pattern == "Center" and lab.root_cause == msg.root_cause.name
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert actions == ["label.set", "label.confirm"]
        assert queries.next_in_queue(s) is None


def test_review_and_advance_is_one_transaction_and_names_the_next(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    """The form's and the API's one submit path: refused reviews write nothing."""
    (g0, g1) = real_grids(data_dir, 2)
    first = make_result(*g0, 0, confidence=0.2, pattern="Loc")
    second = make_result(*g1, 1, confidence=0.3, pattern="Edge-Ring")
    ingest(database, blob_dir, [first, second])
    with pytest.raises(review.ReviewError, match="needs a pattern"):
        review.review_and_advance(database, first.result_id, reviewer="reviewer1", pattern=" ")
    with pytest.raises(review.ReviewError, match="no result nope"):
        review.review_and_advance(database, "nope", reviewer="reviewer1", pattern="Loc")
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
    step = review.review_and_advance(
        database, first.result_id, reviewer="reviewer1", pattern="Loc", remote_addr="10.0.0.9"
    )
    assert step.outcome.action == "confirm" and step.outcome.changed
    assert step.next_id == second.result_id
    last = review.review_and_advance(
        database, second.result_id, reviewer="reviewer1", pattern="Center"
    )
    assert last.outcome.action == "correct" and last.next_id is None
    with database.session() as s:
        audits = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        assert [a.action for a in audits] == ["label.set", "label.set"]
        assert audits[0].remote_addr == "10.0.0.9"


def test_result_lists_filter_and_page(
    database: Database, blob_dir: DirectoryBlobStore, data_dir: Path
) -> None:
    msgs = [
        *results(data_dir, 30, tester="T-01"),
        *results(data_dir, 20, start=30, tester="T-02", model_version="2026.04.0"),
    ]
    ingest(database, blob_dir, msgs)
    with database.session() as s:
        page = queries.list_results(s, queries.ResultFilter(), limit=25)
        assert len(page.rows) == 25 and page.next is not None
        page2 = queries.list_results(s, queries.ResultFilter(), limit=25, before=page.next)
        assert len(page2.rows) == 25 and page2.next is None
        assert not {r.result_id for r in page.rows} & {r.result_id for r in page2.rows}
        times = [r.classified_time for r in page.rows + page2.rows]
        assert times == sorted(times, reverse=True)
        assert len(queries.list_results(s, queries.ResultFilter(tester="T-02")).rows) == 20
        assert all(
            r.model_version == "2026.04.0"
            for r in queries.list_results(s, queries.ResultFilter(model_version="2026.04.0")).rows
        )
        lot = msgs[0].wafer.lot_id
        assert {r.lot_id for r in queries.list_results(s, queries.ResultFilter(lot=lot)).rows} == {
            lot
        }
        edge_ring = queries.list_results(s, queries.ResultFilter(pattern="Edge-Ring")).rows
        assert all(r.pattern == "Edge-Ring" for r in edge_ring)
        first = min(m.classified_time.ToDatetime() for m in msgs)
        day = queries.ResultFilter(date_from=first, date_to=first + timedelta(minutes=5))
        assert len(queries.list_results(s, day).rows) == 10  # one result every 30 s
        assert queries.testers(s) == ["T-01", "T-02"]
        assert queries.recent_values(s, Result.model_version) == ["2026.03.1", "2026.04.0"]
        days, series, totals = queries.pattern_trend(
            s, tester="T-01", days=3, now=first + timedelta(days=1)
        )
        assert len(days) == 3 and sum(totals) == 30
        assert sum(sum(v) for v in series.values()) == 30


def test_alerts_once_acknowledge_and_deliveries(database: Database) -> None:
    msg = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        sequence=1,
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="pattern-repeat",
        rule_kind="pattern_repeat",
        severity=common_pb2.SEVERITY_ERROR,
        title="Edge-Ring on 3 of the last 5 wafers",
        pattern="Edge-Ring",
        tester_id="T-01",
    )
    now = utcnow()
    for _ in range(2):
        with database.connect() as conn:
            write_batch(conn, Batch(alerts=[alert_row(msg, now=now)]))
    assert count(database, AlertRow) == 1
    with database.connect() as conn:
        channels = [("hook", "info"), ("mes", "critical")]
        alert_store.enqueue_deliveries(conn, [(msg.alert_id, "error")], channels)
        alert_store.enqueue_deliveries(conn, [(msg.alert_id, "error")], channels)
    with database.session(write=True) as s:
        due = alert_store.due_deliveries(s, now=utcnow() + timedelta(seconds=1))
        assert [d.channel for d in due] == ["hook"]  # the MES wants critical ones only
        alert_store.record_attempt(
            s, due[0].id, ok=False, status_code=503, error="busy", retry_in=timedelta(seconds=60)
        )
    with database.session(write=True) as s:
        assert alert_store.due_deliveries(s, now=utcnow()) == []
        d = alert_store.deliveries_of(s, msg.alert_id)[0]
        assert (d.state, d.attempts, d.last_status_code) == ("pending", 1, 503)
        alert_store.record_attempt(s, d.id, ok=True, status_code=200, error="", retry_in=None)
        assert alert_store.acknowledge(s, msg.alert_id, user="operator1")
        assert not alert_store.acknowledge(s, msg.alert_id, user="operator1")
    with database.session() as s:
        row = s.get(AlertRow, msg.alert_id)
        assert row is not None and row.acknowledged and row.acknowledged_by == "operator1"
        assert alert_store.to_message(row).severity == common_pb2.SEVERITY_ERROR
        assert alert_store.deliveries_of(s, msg.alert_id)[0].state == "delivered"
        assert alert_store.list_alerts(s, acknowledged=False) == []


def _status(state: int, conn_id: str, cause: int, depth: int = 0) -> DeviceStatus:
    st = DeviceStatus(
        device_id="edge-07",
        connection_id=conn_id,
        state=state,
        cause=cause,
        model_version="2026.03.1",
        outbox_depth=depth,
    )
    st.since.FromDatetime(utcnow())
    return st


def test_device_status_from_birth_and_last_will(database: Database) -> None:
    a, b = messages.new_message_id(), messages.new_message_id()
    birth = DeviceBirth(
        device_id="edge-07",
        connection_id=a,
        site="fab3",
        agent_version="0.1.0",
        model_version="2026.03.1",
        capabilities=["gradcam"],
    )
    online = device_pb2.DEVICE_STATE_ONLINE
    offline = device_pb2.DEVICE_STATE_OFFLINE
    will = device_pb2.STATUS_CAUSE_LAST_WILL

    def apply(*statuses: DeviceStatus, births: list[DeviceBirth] | None = None) -> Device:
        with database.connect() as conn:
            write_batch(conn, Batch(statuses=list(statuses), births=births or []))
        with database.session() as s:
            d = s.get(Device, "edge-07")
            assert d is not None
            return d

    d = apply(_status(online, a, device_pb2.STATUS_CAUSE_CONNECTED, 12), births=[birth])
    assert (d.state, d.site, d.outbox_depth, d.connection_id) == ("online", "fab3", 12, a)
    d = apply(_status(online, b, device_pb2.STATUS_CAUSE_CONNECTED, 3))  # reconnected
    d = apply(_status(offline, a, will))  # the broker noticed the old connection late
    assert (d.state, d.connection_id) == ("online", b)
    d = apply(_status(offline, b, will))
    assert d.state == "offline" and d.last_seen is not None and d.outbox_depth == 3
    with database.session() as s:
        assert [x.device_id for x in queries.devices(s)] == ["edge-07"]


def test_dead_letters_are_kept_once(database: Database) -> None:
    now = utcnow()
    row = dead_letter_row(
        "waferscope/v1/_/edge-01/result",
        b"{not json",
        "not JSON",
        "edge-01",
        now=now,
        keep_bytes=1024,
    )
    for _ in range(2):
        with database.connect() as conn:
            write_batch(conn, Batch(dead_letters=[dict(row)]))
    with database.session() as s:
        dl = s.scalar(select(DeadLetter))
        assert dl is not None and dl.device_id == "edge-01" and dl.payload == b"{not json"
    assert count(database, DeadLetter) == 1


def test_users_passwords_and_audit(database: Database) -> None:
    with database.session(write=True) as s:
        users.add_user(s, "reviewer1", "correct horse", "reviewer")
        with pytest.raises(users.AuthError):
            users.add_user(s, "reviewer1", "another one!", "reviewer")
        with pytest.raises(users.AuthError):
            users.add_user(s, "user2", "short", "reviewer")
        with pytest.raises(users.AuthError):
            users.add_user(s, "user2", "long enough", "wizard")
    with database.session(write=True) as s:
        assert users.authenticate(s, "reviewer1", "wrong password") is None
        assert users.authenticate(s, "nobody", "whatever1") is None
        user = users.authenticate(s, "reviewer1", "correct horse")
        assert user is not None and user.role == "reviewer" and user.last_login is not None
        users.set_active(s, "reviewer1", False, actor="admin")
    with database.session(write=True) as s:
        assert users.authenticate(s, "reviewer1", "correct horse") is None
    with database.session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [
        "user.add",
        "login.failed",
        "login.failed",
        "login",
        "user.disable",
        "login.failed",
    ]
