"""What the hub tells about each message it ingests: log lines with the message's correlation
fields, and (tracing on) one span per message that continues the edge's trace.

Spans (docs/observability.md)::

    hub.ingest   CONSUMER, from the message's arrival until the batch holding it committed; its
                 parent is the edge span named by the ``traceparent`` user property (the edge's
                 ``edge.publish``), so it sits in the wafer's trace
    ├─ hub.decode   decoding and checking the payload, its rows and blobs
    └─ hub.commit   storing its batch: the transaction, with retries while the database is away,
                    and the bookkeeping after it

Lines about a message (received, stored, duplicate, dead letter) carry its ``result_id`` (or
``message_id`` for an alert), ``device_id``, the wafer's ``lot_id``/``wafer_id``/``source`` and,
whenever the edge sent a traceparent, its ``trace_id`` — also with the hub's tracing off.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from waferscope.hub.store.ingest import BatchOutcome
from waferscope.protocols import tracing
from waferscope.protocols.logs import alert_fields, correlation, result_fields
from waferscope.protocols.pb.alert_pb2 import Alert
from waferscope.protocols.pb.result_pb2 import WaferResult

TRACER = "waferscope.hub"
TRACED_KINDS = frozenset({"result", "alert"})
log = logging.getLogger("waferscope.hub.ingest")


def _device_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3][:64] if len(parts) == 5 else ""


def traceparent_of(properties: Any) -> str:
    """The ``traceparent`` user property of a received MQTT v5 message ("" when none)."""
    return tracing.from_user_properties(getattr(properties, "UserProperty", None))


class Seen:
    """One message of a batch: its log fields and its ``hub.ingest`` span until the commit."""

    __slots__ = ("dead", "fields", "key", "kind", "message", "span")

    def __init__(self, topic: str, kind: str, traceparent: str, received_ns: int) -> None:
        self.kind = kind
        self.dead = False
        self.key = ""  # the message's id: result_id or alert_id
        self.message: WaferResult | Alert | None = None  # its fields are read when logging
        self.fields: dict[str, str] = {}
        device = _device_of(topic)
        if device:
            self.fields["device_id"] = device
        parent = tracing.parent_context(traceparent)
        self.span: Span = INVALID_SPAN
        if parent is not None or (kind in TRACED_KINDS and tracing.enabled()):
            # with tracing off this is a non-recording span that still carries the edge's ids
            self.span = tracing.get_tracer(TRACER).start_span(
                "hub.ingest",
                context=parent or trace.set_span_in_context(INVALID_SPAN),
                kind=SpanKind.CONSUMER,
                start_time=received_ns or None,
                attributes={
                    "messaging.system": "mqtt",
                    "messaging.destination.name": topic,
                    "waferscope.message.kind": kind,
                },
            )

    def identify(self, message: Any) -> None:
        """Note the decoded message (its correlation fields are read when a line is logged)."""
        if isinstance(message, WaferResult):
            self.message, self.key = message, message.result_id
        elif isinstance(message, Alert):
            self.message, self.key = message, message.alert_id
        if self.key and self.span.is_recording():
            self.span.set_attribute("waferscope.message.id", self.key)

    def guess(self, payload: bytes) -> None:
        """The ids of a payload that did not decode, where its JSON still names them."""
        try:
            doc = json.loads(payload[: 1 << 20])
        except ValueError:
            return
        if isinstance(doc, dict):
            for key, name in (("resultId", "result_id"), ("alertId", "message_id")):
                if isinstance(doc.get(key), str) and doc[key]:
                    self.fields[name] = self.key = doc[key][:64]

    @contextmanager
    def active(self) -> Iterator[None]:
        fields = dict(self.fields)
        if isinstance(self.message, WaferResult):
            fields.update(result_fields(self.message))
        elif isinstance(self.message, Alert):
            fields.update(alert_fields(self.message))
        with correlation(**fields), trace.use_span(self.span, end_on_exit=False):
            yield

    def log(self, level: int, msg: str, *args: Any) -> None:
        if log.isEnabledFor(level):
            with self.active():
                log.log(level, msg, *args)

    @contextmanager
    def decoding(self) -> Iterator[None]:
        if not self.span.is_recording():
            yield
            return
        tracer = tracing.get_tracer(TRACER)
        with tracer.start_as_current_span(
            "hub.decode", context=trace.set_span_in_context(self.span)
        ):
            yield

    def failed(self, reason: str) -> None:
        """The message became a dead letter."""
        self.dead = True
        if self.span.is_recording():
            self.span.set_status(Status(StatusCode.ERROR, reason))

    def end(self, began_ns: int, ended_ns: int, batch: int, status: str) -> None:
        if not self.span.is_recording():
            return
        commit = tracing.get_tracer(TRACER).start_span(
            "hub.commit",
            context=trace.set_span_in_context(self.span),
            start_time=began_ns,
            attributes={"waferscope.batch.size": batch},
        )
        commit.end(end_time=ended_ns)
        self.span.set_attribute("waferscope.ingest.status", status)
        self.span.end(end_time=ended_ns)


def committed(
    seen: Sequence[Seen], outcome: BatchOutcome, began_ns: int, ended_ns: int | None = None
) -> None:
    """Log what became of each message of a committed batch and end its spans."""
    ended = ended_ns or time.time_ns()
    new = outcome.new_results | outcome.new_alerts
    stored: set[str] = set()
    for s in seen:
        key = s.key
        if s.dead:
            status = "dead letter"
        elif s.kind not in TRACED_KINDS or not key:
            status = "applied"
        elif key in stored or key not in new:
            status = "duplicate"
            s.log(logging.INFO, "%s %s was stored before: duplicate dropped", s.kind, key)
        else:
            status = "stored"
            stored.add(key)
            s.log(logging.DEBUG, "%s stored", s.kind)
        s.end(began_ns, ended, len(seen), status)
