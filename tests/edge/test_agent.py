"""The agent end to end, in process: hot folder → SQLite → Mosquitto, with faults.

Every check looks at what a real subscriber received, de-duplicated on the message id.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from edge_test_support import (
    Broker,
    Subscriber,
    agent_toml,
    drop,
    start_agent,
    wafer_bytes,
    wait_for,
)
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring


def folders(w: Wiring) -> tuple[Path, Path, Path]:
    hot = w.config.ingest.hot_folder
    assert hot.path and hot.done_dir and hot.rejected_dir
    return hot.path, hot.done_dir, hot.rejected_dir


def test_files_reach_the_broker_exactly_once_and_bad_files_are_explained(
    tmp_path: Path,
    bundle_dir: Path,
    broker: Broker,
    subscriber: Subscriber,
    val_npz: Path,
    tester_dir: Path,
) -> None:
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port))
    try:
        incoming, done, rejected = folders(w)
        wafers = list(dataset_wafers(val_npz, 24))
        for i, wafer in enumerate(wafers):
            fmt = ("e142", "csv", "tsk", "stdf")[i % 4]
            drop(incoming, f"w{i:03d}.{fmt}", wafer_bytes(wafer, fmt))
        drop(incoming, "a595.stdf.gz", (tester_dir / "stdf/a595.stdf.gz").read_bytes())  # 3 wafers
        good = wafer_bytes(wafers[0], "e142")
        drop(incoming, "corrupted.xml", good[:200] + b"\x00garbage<<<" + good[260:])
        drop(incoming, "truncated.stdf", (tester_dir / "stdf/a595.stdf.gz").read_bytes()[:1500])
        (incoming / "written-in-place.xml").write_bytes(wafer_bytes(wafers[1], "e142")[:100])
        time.sleep(0.1)  # the rest arrives later: taken only once it has settled
        (incoming / "written-in-place.xml").write_bytes(wafer_bytes(wafers[1], "e142"))
        (incoming / "still-writing.part").write_bytes(b"partial")
        wait_for(lambda: len(subscriber.unique_results()) >= 28, 60, what="28 results")
        wait_for(lambda: len(list(rejected.glob("*.reason.txt"))) >= 2, 20, what="rejections")

        results = subscriber.unique_results()
        assert len(results) == 28
        assert len(subscriber.of_kind("result")) >= 28
        seqs = sorted(int(r["sequence"]) for r in results.values())
        assert seqs == list(range(1, 29))  # no gaps, no repeats
        keys = {(r["wafer"]["sourceName"], r["wafer"]["waferIndex"]) for r in results.values()}
        assert len(keys) == 28  # each wafer once
        one = next(iter(results.values()))
        assert one["deviceId"] == "edge-01" and one["heatmap"]["method"] == "gradcam"
        assert one["map"]["rows"] > 0 and one["modelVersion"] == "tiny-test-1"
        assert all(not m.retain for m in subscriber.messages if not m.topic.endswith("/status"))

        wait_for(lambda: not list(incoming.glob("w*")), 10, what="incoming to empty")
        assert sorted(p.name for p in incoming.iterdir()) == ["still-writing.part"]
        assert len(list(done.glob("w0*"))) == 24
        assert (done / "written-in-place.xml").exists()
        reasons = {p.name: p.read_text() for p in rejected.glob("*.reason.txt")}
        assert set(reasons) == {"corrupted.xml.reason.txt", "truncated.stdf.reason.txt"}
        assert "format_error" in reasons["corrupted.xml.reason.txt"]
        assert "truncat" in reasons["truncated.stdf.reason.txt"].lower()
        # the same bytes again: a duplicate, rejected with a reason, not classified twice
        drop(incoming, "again.xml", wafer_bytes(wafers[0], "e142"))
        wait_for((rejected / "again.xml.reason.txt").exists, 20, what="duplicate")
        assert "already processed" in (rejected / "again.xml.reason.txt").read_text()
        wait_for(lambda: len(subscriber.of_kind("alert")) >= 2, 10, what="parse-failure alerts")
        kinds = {a.payload["ruleKind"] for a in subscriber.of_kind("alert")}
        assert "parse_failure" in kinds
        time.sleep(0.5)
        assert len(subscriber.unique_results()) == 28
        status = subscriber.of_kind("status")
        assert status and all(m.payload["deviceId"] == "edge-01" for m in status)
        assert subscriber.of_kind("birth")
        kinds_in_order = [m.topic.rsplit("/", 1)[1] for m in subscriber.messages]
        assert kinds_in_order.index("birth") < kinds_in_order.index("result")
    finally:
        w.agent.stop()
    offline = subscriber.of_kind("status")[-1].payload
    assert (offline["state"], offline["cause"]) == ("DEVICE_STATE_OFFLINE", "STATUS_CAUSE_SHUTDOWN")


def test_broker_outage_then_in_order_drain(
    tmp_path: Path, bundle_dir: Path, broker: Broker, subscriber: Subscriber, val_npz: Path
) -> None:
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port))
    try:
        incoming, done, _ = folders(w)
        wafers = list(dataset_wafers(val_npz, 30))
        for i in range(10):
            drop(incoming, f"a{i:03d}.xml", wafer_bytes(wafers[i]))
        wait_for(lambda: len(subscriber.unique_results()) == 10, 30, what="first 10")
        broker.stop()
        wait_for(lambda: not w.link_state.connected, 15, what="link down")
        for i in range(10, 30):
            drop(incoming, f"a{i:03d}.xml", wafer_bytes(wafers[i]))
        wait_for(lambda: len(list(done.iterdir())) == 30, 30, what="all stored")
        assert w.store.outbox_depth() >= 20
        time.sleep(1.5)
        broker.start()
        wait_for(lambda: len(subscriber.unique_results()) == 30, 60, what="drain after outage")
        wait_for(lambda: w.store.outbox_depth() == 0, 20, what="outbox empty")
        seen: list[int] = []
        for m in subscriber.of_kind("result"):
            s = int(m.payload["sequence"])
            if s not in seen:
                seen.append(s)
        assert seen == list(range(1, 31))  # drained in order
        assert w.link_state.reconnects >= 1
        wait_for(
            lambda: any(
                m.payload.get("hubLink", {}).get("reconnectCount", 0) >= 1
                for m in subscriber.of_kind("status")
            ),
            15,
            what="status after reconnect",
        )
    finally:
        w.agent.stop()


def test_store_full_pauses_ingest_and_loses_nothing(
    tmp_path: Path, bundle_dir: Path, broker: Broker, subscriber: Subscriber, val_npz: Path
) -> None:
    extra = "[store]\nmax_bytes = 1048576\nprune_to = 0.6\n"
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port, extra))
    try:
        incoming, done, _ = folders(w)
        broker.stop()
        wait_for(lambda: not w.link_state.connected, 15, what="link down")
        total = 260  # ~5 kB per result: more than 1 MiB of unpublished results
        for i, wafer in enumerate(dataset_wafers(val_npz, total)):
            drop(incoming, f"f{i:04d}.xml", wafer_bytes(wafer))
        wait_for(lambda: w.store.full, 60, what="store full")
        time.sleep(1.0)
        left = len(list(incoming.iterdir()))
        assert left > 0  # ingest paused: the files wait in the folder
        assert w.store.used_bytes() <= w.store.max_bytes
        assert not w.worker.accepting
        alerts = w.store.alerts()
        assert any(a["rule_id"] == "store-full" for a in alerts)
        stored = w.store.counts()["results"]
        broker.start()
        wait_for(
            lambda: len(subscriber.unique_results()) == total, 120, what="everything published"
        )
        wait_for(lambda: not list(incoming.iterdir()), 30, what="incoming drained")
        assert len(list(done.iterdir())) == total
        assert w.store.counts()["results"] < total  # published results were pruned
        assert stored > 0
        assert any(m.payload["ruleId"] == "store-full" for m in subscriber.of_kind("alert"))
        seqs = sorted(int(r["sequence"]) for r in subscriber.unique_results().values())
        assert seqs == list(range(1, total + 1))
        db = w.config.store.path
        assert db is not None and db.stat().st_size <= w.store.max_bytes + 256 * 1024
    finally:
        w.agent.stop()


def test_hot_swap_keeps_every_wafer_and_refuses_a_bad_bundle(
    tmp_path: Path,
    bundle_dir: Path,
    bundle_copy: Path,
    broker: Broker,
    subscriber: Subscriber,
    val_npz: Path,
) -> None:
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port))
    try:
        incoming, _, _ = folders(w)
        manifest = json.loads((bundle_copy / "manifest.json").read_text())
        manifest["modelVersion"] = "tiny-test-2"
        (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
        wafers = list(dataset_wafers(val_npz, 60))
        for i, wafer in enumerate(wafers[:30]):
            drop(incoming, f"s{i:03d}.xml", wafer_bytes(wafer))
        wait_for(lambda: len(subscriber.unique_results()) >= 10, 30, what="first results")
        for i, wafer in enumerate(wafers[30:], start=30):
            drop(incoming, f"s{i:03d}.xml", wafer_bytes(wafer))
        w.slot.swap(bundle_copy)  # while wafers are queued and in hand
        wait_for(lambda: len(subscriber.unique_results()) == 60, 60, what="60 results")
        versions = {r["modelVersion"] for r in subscriber.unique_results().values()}
        assert versions == {"tiny-test-1", "tiny-test-2"}
        (bundle_copy / "model.int8.onnx").write_bytes(b"broken")
        with pytest.raises(Exception, match=r"sha256|bytes"):
            w.slot.swap(bundle_copy)
        assert w.slot.current.version == "tiny-test-2"
        drop(incoming, "after.xml", wafer_bytes(wafers[0], "csv"))
        wait_for(lambda: len(subscriber.unique_results()) == 61, 30, what="after refused swap")
    finally:
        w.agent.stop()


def test_results_nobody_received_stay_in_the_outbox_until_a_subscriber_comes(
    tmp_path: Path, bundle_dir: Path, broker: Broker, val_npz: Path
) -> None:
    """PUBACK reason 16 (no matching subscribers, e.g. a restarted broker before the hub has
    subscribed again) is not a delivery: the messages stay and go again, in order."""
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port))
    try:
        incoming, done, _ = folders(w)
        wafers = list(dataset_wafers(val_npz, 12))
        for i in range(8):
            drop(incoming, f"n{i:03d}.xml", wafer_bytes(wafers[i]))
        wait_for(lambda: len(list(done.iterdir())) == 8, 30, what="all stored")
        wait_for(lambda: w.link_state.connected, 15, what="link up")
        time.sleep(1.5)  # published, acknowledged with 'no matching subscribers'
        assert w.store.outbox_depth() >= 8  # the results (and any alert they raised)
        sub = Subscriber(broker.port, client_id="late-hub")
        try:
            wait_for(lambda: w.store.outbox_depth() == 0, 60, what="outbox drained")
            for i in range(8, 12):
                drop(incoming, f"n{i:03d}.xml", wafer_bytes(wafers[i]))
            wait_for(lambda: len(sub.unique_results()) == 12, 30, what="12 results")
            seen: list[int] = []
            for m in sub.of_kind("result"):
                s = int(m.payload["sequence"])
                if s not in seen:
                    seen.append(s)
            assert seen == list(range(1, 13))
        finally:
            sub.close()
    finally:
        w.agent.stop()


def test_a_database_error_pauses_the_batch_and_the_worker_lives_on(
    tmp_path: Path, bundle_dir: Path, broker: Broker, subscriber: Subscriber, val_npz: Path
) -> None:
    """A commit refused by SQLite (here: 'database is locked', injected once) leaves the files
    in the hot folder; the worker thread survives and takes them again."""
    import sqlite3

    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port))
    real_commit = w.store.commit
    failures = []

    def flaky_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(1)
            raise sqlite3.OperationalError("database is locked")
        return real_commit(*args, **kwargs)

    w.store.commit = flaky_commit  # type: ignore[method-assign]
    try:
        incoming, done, rejected = folders(w)
        wafers = list(dataset_wafers(val_npz, 6))
        for i, wafer in enumerate(wafers):
            drop(incoming, f"l{i:03d}.xml", wafer_bytes(wafer))
        wait_for(lambda: len(subscriber.unique_results()) == 6, 60, what="all six after the error")
        assert failures == [1]
        assert w.worker._thread.is_alive()
        assert len(list(done.iterdir())) == 6 and not list(rejected.iterdir())
    finally:
        w.agent.stop()
