"""Reviewers' labels go back to the edge that produced the wafer: queued with the review, sent on
the edge's label topic (QoS 1) by the label publisher over a real Mosquitto, kept while the broker
is away."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from hub_data import make_result, real_grids
from hub_support import Broker, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from waferscope.hub.blobs import DirectoryBlobStore
from waferscope.hub.config import MqttConfig
from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import LabelDispatch
from waferscope.hub.ingest.label_publisher import LabelPublisher
from waferscope.hub.store import review
from waferscope.protocols import messages, topics
from waferscope.protocols.pb import label_pb2

from .test_store import ingest


def test_a_review_sends_the_label_to_the_edge_that_produced_the_wafer(
    sqlite_db: Database, blob_dir: DirectoryBlobStore, data_dir: Path, broker: Broker
) -> None:
    grids = real_grids(data_dir, 2)
    mine = make_result(*grids[0], 0, confidence=0.3, pattern="Loc", device_id="edge-07")
    other = make_result(*grids[1], 1, confidence=0.3, pattern="Loc", device_id="edge-08")
    ingest(sqlite_db, blob_dir, [mine, other])
    with sqlite_db.session(write=True) as s:
        review.submit_review(s, mine.result_id, reviewer="reviewer1", pattern="Center")
    publisher = LabelPublisher(
        sqlite_db, MqttConfig(host="127.0.0.1", port=broker.port), poll_s=0.2
    )
    assert publisher.send_pending() == 0  # not connected: nothing sent, nothing lost
    assert publisher.pending() == 1

    got: list[tuple[str, label_pb2.WaferLabel]] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        _, label = messages.decode_topic(msg.topic, msg.payload, None)
        with lock:
            got.append((msg.topic, label))  # type: ignore[arg-type]

    edge = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="edge-07", protocol=mqtt.MQTTv5
    )
    edge.on_message = on_message
    edge.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.subscription("label"), qos=1)
    edge.connect("127.0.0.1", broker.port)
    edge.loop_start()
    try:
        publisher.start()
        wait_for(lambda: len(got) == 1, 15, "the label at the edge")
        wait_for(lambda: publisher.pending() == 0, 5, "the dispatch row marked sent")
        with sqlite_db.session(write=True) as s:  # a second decision on the same wafer
            review.submit_review(s, mine.result_id, reviewer="reviewer2", pattern="Donut")
        publisher.wake.set()
        wait_for(lambda: len(got) == 2, 15, "the second label at the edge")
    finally:
        publisher.stop()
        edge.loop_stop()
        edge.disconnect()
    topic, first = got[0]
    assert topic == topics.label_topic("edge-07")
    assert (first.device_id, first.result_id, first.pattern) == (
        "edge-07",
        mine.result_id,
        "Center",
    )
    assert first.action == "correct" and first.labelled_by == "reviewer1"
    assert first.source == label_pb2.LABEL_SOURCE_HUB_REVIEW
    assert got[1][1].pattern == "Donut" and got[1][1].label_id != first.label_id
    with sqlite_db.session() as s:
        rows = s.scalars(select(LabelDispatch).order_by(LabelDispatch.id)).all()
        assert [r.device_id for r in rows] == ["edge-07", "edge-07"]
        assert all(r.sent_at is not None and r.attempts >= 1 for r in rows)
