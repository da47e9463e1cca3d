"""MQTT ingest against a real Mosquitto: exactly once, dead letters, device status, shared load."""

from __future__ import annotations

import json
from pathlib import Path

from hub_data import results
from hub_support import Broker, Publisher, wait_for
from hub_testing import hub_config
from sqlalchemy import func, select

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import DeadLetter, Device, Result
from waferscope.protocols import messages, topics
from waferscope.protocols.pb import device_pb2
from waferscope.protocols.pb.device_pb2 import DeviceBirth, DeviceStatus


def mqtt_hub(
    tmp_path: Path, broker: Broker, db_url: str | None = None, *, workers: int = 1, **kw: object
) -> Hub:
    cfg = hub_config(
        tmp_path,
        db_url,
        mqtt={
            "enabled": True,
            "port": broker.port,
            "client_id": "hub-test",
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
        },
        ingest={"batch_wait_ms": 10, "workers": workers},
    )
    return Hub(cfg, **kw)  # type: ignore[arg-type]


def stored_ids(hub: Hub) -> list[str]:
    with hub.db.session() as s:
        return list(s.scalars(select(Result.result_id)))


def count(hub: Hub, model: type) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_results_duplicates_malformed_and_status(
    tmp_path: Path, broker: Broker, db_url: str, data_dir: Path
) -> None:
    hub = mqtt_hub(tmp_path, broker, db_url)
    hub.start_background(services=False)
    pub = Publisher(broker.port, client_id="edge-01")
    try:
        wait_for(hub.ingest.subscribed.is_set, 10, what="hub subscription")  # type: ignore[union-attr]
        pub.connected.wait(10)
        conn_id = messages.new_message_id()
        birth = DeviceBirth(
            device_id="edge-01",
            connection_id=conn_id,
            site="fab3",
            agent_version="0.1.0",
            model_version="2026.03.1",
        )
        pub.publish(topics.birth_topic("edge-01", site="fab3"), messages.encode(birth), "birth")
        online = DeviceStatus(
            device_id="edge-01",
            connection_id=conn_id,
            state=device_pb2.DEVICE_STATE_ONLINE,
            cause=device_pb2.STATUS_CAUSE_CONNECTED,
            outbox_depth=7,
            model_version="2026.03.1",
        )
        pub.publish(
            topics.status_topic("edge-01", site="fab3"),
            messages.encode(online),
            "status",
            retain=True,
        )
        msgs = list(results(data_dir, 150))
        topic = topics.result_topic("edge-01", site="fab3")
        for m in msgs:
            pub.publish(topic, messages.encode(m), m.result_id)
        for m in msgs[:40]:  # an edge resending after a crash between publish and commit
            pub.publish(topic, messages.encode(m), m.result_id + "-again")
        bad_map = results(data_dir, 1, start=500).__next__()
        bad_map.map.states = bad_map.map.states[:-3]
        other_device = results(data_dir, 1, start=501, device_id="edge-02").__next__()
        no_id = json.loads(messages.encode(msgs[0]))
        no_id["resultId"] = "not-a-uuid"
        malformed = [
            (topic, b"{not json"),
            (topic, b"\xff\xfe"),
            (topic, json.dumps(no_id).encode()),
            (topic, messages.encode(bad_map)),
            (topic, messages.encode(other_device)),  # device_id contradicts the topic
            ("waferscope/v1/fab3/bad$device/result", messages.encode(msgs[1])),
        ]
        for i, (t, payload) in enumerate(malformed):
            pub.publish(t, payload, f"bad-{i}")
        wait_for(lambda: pub.pending() == 0, 30, what="PUBACKs")
        wait_for(lambda: count(hub, DeadLetter) == len(malformed), 30, what="dead letters")
        wait_for(lambda: count(hub, Result) >= 150, 30, what="results stored")
        ids = stored_ids(hub)
        assert sorted(ids) == sorted(m.result_id for m in msgs)  # each exactly once
        with hub.db.session() as s:
            dead = list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))
            device = s.get(Device, "edge-01")
        assert {d.device_id for d in dead} == {"edge-01", "bad$device"}
        assert any("does not match the topic" in d.error for d in dead)
        assert any("state bytes" in d.error for d in dead)
        assert device is not None
        assert (device.state, device.outbox_depth, device.site) == ("online", 7, "fab3")
        assert device.result_sequence_max == 150
        metrics = hub.metrics.render().decode()
        assert 'waferscope_hub_ingest_malformed_total{kind="result"} 5.0' in metrics
        assert 'waferscope_hub_ingest_malformed_total{kind="unknown"} 1.0' in metrics
        # the broker delivers the last will when the edge's connection dies
        will = messages.last_will("edge-01", conn_id, connected_at=online.since.ToDatetime())
        pub.publish(
            topics.last_will_topic("edge-01", site="fab3"),
            messages.encode(will),
            "will",
            retain=True,
        )

        def offline() -> bool:
            with hub.db.session() as s:
                d = s.get(Device, "edge-01")
                return d is not None and d.state == "offline"

        wait_for(offline, 20, what="device offline")
    finally:
        pub.close()
        hub.stop()


def test_two_workers_share_the_stream(tmp_path: Path, broker: Broker, data_dir: Path) -> None:
    """Two ingest workers in one shared-subscription group: every result stored once."""
    first = mqtt_hub(tmp_path, broker, workers=2)
    second = mqtt_hub(tmp_path, broker, workers=2, worker=1)
    pub = Publisher(broker.port, client_id="edge-03")
    try:
        for h in (first, second):
            h.start_background(services=False)
            wait_for(h.ingest.subscribed.is_set, 10, what="subscription")  # type: ignore[union-attr]
        pub.connected.wait(10)
        msgs = list(results(data_dir, 400, device_id="edge-03"))
        topic = topics.result_topic("edge-03")
        for m in msgs:
            pub.publish(topic, messages.encode(m), m.result_id)
        wait_for(lambda: count(first, Result) == 400, 60, what="all results")
        assert sorted(stored_ids(first)) == sorted(m.result_id for m in msgs)
        shares = [
            h.metrics.messages.labels(kind="result")._value.get()  # type: ignore[attr-defined]
            for h in (first, second)
        ]
        assert sum(shares) == 400 and min(shares) > 0, shares
    finally:
        pub.close()
        second.stop()
        first.stop()
