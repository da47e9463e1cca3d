"""One wafer's trace in process: a real agent (hot folder, store, MQTT link to a real broker)
and the hub's ingest, both recording into the SDK's in-memory exporter."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from edge_test_support import Broker, drop, wafer_bytes, wait_for
from hub_testing import hub_config
from observability_support import edge_toml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from paho.mqtt.enums import CallbackAPIVersion
from sample_wafers import dataset_wafers

from waferscope.edge.app import build_agent
from waferscope.edge.config_loader import load_config
from waferscope.hub.ingest.handler import Incoming
from waferscope.protocols import tracing
from waferscope.protocols.logs import CorrelationFilter


@dataclass
class Message:
    topic: str
    payload: bytes
    user_properties: list[tuple[str, str]]


class Recorder:
    """An MQTT v5 subscriber that keeps each message with its user properties."""

    def __init__(self, port: int) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="trace-recorder",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "waferscope/v1/+/+/result", qos=1
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = list(getattr(msg.properties, "UserProperty", []) or [])
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), props))

    def results(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Recorder]:
    rec = Recorder(broker.port)
    wait_for(rec.client.is_connected, 10, what="recorder")
    time.sleep(0.2)
    yield rec
    rec.close()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


@pytest.mark.slow
def test_one_wafer_is_one_trace_from_the_file_to_the_hub_database(
    tmp_path: Path,
    bundle_dir: Path,
    broker: Broker,
    recorder: Recorder,
    val_npz: Path,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from waferscope.hub.app import Hub

    caplog.handler.addFilter(CorrelationFilter())
    caplog.set_level(logging.DEBUG, logger="waferscope")
    config = load_config(edge_toml(tmp_path, bundle_dir, broker.port), environ={}).config
    wiring = build_agent(config)
    wiring.agent.start()
    try:
        incoming = config.ingest.hot_folder.path
        assert incoming is not None
        (wafer,) = dataset_wafers(val_npz, 1)
        drop(incoming, "LOTA_01.xml", wafer_bytes(wafer))
        wait_for(lambda: bool(recorder.results()), 60, what="the result at the broker")
        wait_for(lambda: bool(by_name(spans.get_finished_spans(), "edge.ingest")), 10)
    finally:
        wiring.agent.stop()

    edge = spans.get_finished_spans()
    (ingest,) = by_name(edge, "edge.ingest")
    (parse,) = by_name(edge, "edge.parse")
    (wafer_span,) = by_name(edge, "edge.wafer")
    (publish,) = by_name(edge, "edge.publish")
    assert ingest.parent is None  # the file starts the trace
    assert (
        ingest.attributes is not None and ingest.attributes["waferscope.file.name"] == "LOTA_01.xml"
    )
    assert ingest.attributes["waferscope.file.status"] == "accepted"
    assert parent_id(parse) == span_id(ingest)
    assert parent_id(wafer_span) == span_id(ingest)
    for stage in ("edge.validate", "edge.infer", "edge.explain", "edge.commit"):
        (s,) = by_name(edge, stage)
        assert parent_id(s) == span_id(wafer_span), stage
        assert s.start_time is not None and s.end_time is not None and s.end_time >= s.start_time
    assert parent_id(publish) == span_id(wafer_span)
    assert publish.kind is SpanKind.PRODUCER
    assert {trace_id(s) for s in edge} == {trace_id(ingest)}
    assert wafer_span.attributes is not None
    result_id = wafer_span.attributes["waferscope.result_id"]

    (message,) = recorder.results()
    traceparent = tracing.from_user_properties(message.user_properties)
    assert traceparent.startswith(f"00-{trace_id(ingest):032x}-{span_id(publish):016x}-")
    # the outbox row kept the wafer span's context
    meta, stored = wiring.store.result(str(result_id)) or ({}, None)
    assert stored is not None and meta["published"] == 1

    # the edge's lines about the wafer carry its result id, those about the file its name
    edge_lines = [r for r in caplog.records if r.name.startswith("waferscope.edge")]
    about_wafer = [r.getMessage() for r in edge_lines if getattr(r, "result_id", None) == result_id]
    for words in (
        "wafer parsed",
        "classified as",
        "committed as result #1",
        "publishing result",
        "acknowledged",
    ):
        assert any(words in m for m in about_wafer), (words, about_wafer)
    about_file = [r.getMessage() for r in edge_lines if getattr(r, "source", None) == "LOTA_01.xml"]
    assert any("queued" in m for m in about_file) and any(
        "parsed: 1 wafers" in m for m in about_file
    )
    assert all(
        getattr(r, "trace_id", None) == f"{trace_id(ingest):032x}"
        for r in edge_lines
        if getattr(r, "result_id", None) == result_id
    )

    # the hub: its ingest span continues the trace as a child of edge.publish
    spans.clear()
    caplog.clear()
    hub = Hub(hub_config(tmp_path))
    try:
        item = Incoming(message.topic, message.payload, traceparent, time.time_ns())
        assert hub.writer.handle([item])
        assert hub.writer.handle([item])  # a redelivery: a duplicate
        bad = Incoming(
            message.topic,
            b'{"resultId": "%s", "deviceId": 7}' % str(result_id).encode(),
            traceparent,
        )
        assert hub.writer.handle([bad])
    finally:
        hub.stop()
    hub_spans = spans.get_finished_spans()
    first, again, dead = by_name(hub_spans, "hub.ingest")
    for s in (first, again, dead):
        assert trace_id(s) == trace_id(ingest)
        assert parent_id(s) == span_id(publish)
        assert s.kind is SpanKind.CONSUMER
    assert first.attributes is not None and first.attributes["waferscope.ingest.status"] == "stored"
    assert (
        again.attributes is not None and again.attributes["waferscope.ingest.status"] == "duplicate"
    )
    assert dead.status.status_code is StatusCode.ERROR
    for child in ("hub.decode", "hub.commit"):
        assert any(parent_id(s) == span_id(first) for s in by_name(hub_spans, child)), child

    hub_lines = [
        (r.getMessage(), r.levelname)
        for r in caplog.records
        if r.name.startswith("waferscope.hub") and getattr(r, "result_id", None) == result_id
    ]
    messages = [m for m, _ in hub_lines]
    assert any(m.startswith("received result from edge-07") for m in messages), messages
    assert any(m == "result stored" for m in messages), messages
    assert any("duplicate" in m for m in messages), messages
    assert any("dead letter" in m and level == "WARNING" for m, level in hub_lines), hub_lines
