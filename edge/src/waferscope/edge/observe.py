"""What the edge tells about each file and wafer: log lines with correlation fields, and spans.

One trace per file (docs/observability.md)::

    edge.ingest   the file, from the moment it was taken until it is settled (moved / answered)
    ├─ edge.parse     reading it (and checking each wafer as it comes)
    └─ edge.wafer     one per wafer, from its parse to the commit that stores its result
       ├─ edge.validate   quality check, normalisation, encoding
       ├─ edge.infer      the engine run of its micro-batch
       ├─ edge.explain    Grad-CAM, hot regions and routing of that batch
       ├─ edge.commit     the store transaction that holds it
       └─ edge.publish    building its MQTT message (later, on the link's thread; the outbox
                          row keeps the wafer span's traceparent, so this holds after a restart)

The ``traceparent`` of ``edge.publish`` goes to the hub as an MQTT v5 user property. Every log
line about a wafer carries its ``result_id`` (assigned when the wafer is parsed, the message id
the hub stores it under) and the file's fields; lines about the file carry ``source`` and
``correlation_id``. With tracing off, nothing here creates a span.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from waferscope.edge.jobs import JobStatus
from waferscope.protocols import tracing
from waferscope.protocols.logs import correlation
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.wafermap import WaferMap

if TYPE_CHECKING:
    from waferscope.edge.jobs import IngestJob, JobOutcome
    from waferscope.edge.store import OutboxRow

TRACER = "waferscope.edge"
log = logging.getLogger("waferscope.edge.wafer")


def _tracer() -> trace.Tracer:
    return tracing.get_tracer(TRACER)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def job_fields(job: IngestJob) -> dict[str, str]:
    fields = {
        "source": job.name,
        "correlation_id": job.correlation_id or job.digest,
        "tester_id": job.tester_id or "",
    }
    return {k: v for k, v in fields.items() if v}


# --------------------------------------------------------------------------- files
def start_job(job: IngestJob, size: int) -> Span:
    """The file's ``edge.ingest`` span (from when the file was received), or no span."""
    if not tracing.enabled():
        return INVALID_SPAN
    return _tracer().start_span(
        "edge.ingest",
        context=trace.set_span_in_context(INVALID_SPAN),  # a new trace, whatever is current
        start_time=_ns(job.received.timestamp()),
        attributes={
            "waferscope.file.name": job.name,
            "waferscope.file.sha256": job.digest,
            "waferscope.file.origin": job.origin,
            "waferscope.file.bytes": size,
            "waferscope.correlation_id": job.correlation_id or job.digest,
        },
    )


@contextmanager
def file_scope(job: IngestJob) -> Iterator[None]:
    """The file's fields in the log context, its span current."""
    span: Span = job.span if job.span is not None else INVALID_SPAN
    with correlation(**job_fields(job)), trace.use_span(span, end_on_exit=False):
        yield


@contextmanager
def parse_span(job: IngestJob) -> Iterator[Span]:
    if job.span is None or not job.span.is_recording():
        yield INVALID_SPAN
        return
    with _tracer().start_as_current_span(
        "edge.parse", context=trace.set_span_in_context(job.span)
    ) as span:
        yield span


def parsed(job: IngestJob) -> None:
    """The line that says what reading the file gave (in its file scope)."""
    o = job.outcome
    if o is None:
        return
    if o.status is JobStatus.DUPLICATE:
        log.info("already processed (same bytes): not classified again")
    elif o.status is JobStatus.REJECTED:
        log.warning("file rejected: %s: %s", o.error_code, o.error_message)
    else:
        refused = len(o.wafers) - len(job.prepared)
        log.info("parsed: %d wafers, %d refused", len(job.prepared), refused)


def drop_prepared(job: IngestJob, reason: str) -> None:
    """Forget the job's prepared wafers, ending the spans of those not committed."""
    for _, pending in job.prepared:
        if pending.trace is not None:
            pending.trace.end(f"not stored: {reason}")
    job.prepared.clear()


def end_job(job: IngestJob, outcome: JobOutcome) -> None:
    """End the file's span (its wafers' spans end when they are committed or dropped)."""
    span = job.span
    if span is None or not span.is_recording():
        return
    span.set_attribute("waferscope.file.status", outcome.status.value)
    span.set_attribute("waferscope.file.wafers", len(outcome.wafers))
    if outcome.error_code:
        span.set_attribute("waferscope.error.code", outcome.error_code)
    if outcome.status in (JobStatus.REJECTED, JobStatus.PAUSED, JobStatus.SHUTDOWN):
        span.set_status(Status(StatusCode.ERROR, outcome.error_message or outcome.status.value))
    span.end()


# --------------------------------------------------------------------------- wafers
class WaferTrace:
    """One wafer's log fields and ``edge.wafer`` span, from its parse to its commit."""

    __slots__ = ("fields", "span", "traceparent")

    def __init__(self, job: IngestJob, result_id: str, wafer: WaferMap) -> None:
        wafer_index = wafer.provenance.wafer_index
        self.fields = {**job_fields(job), "result_id": result_id, "wafer_index": str(wafer_index)}
        for key, value in (("lot_id", wafer.info.lot_id), ("wafer_id", wafer.info.wafer_id)):
            if value:
                self.fields[key] = value
        self.span: Span = INVALID_SPAN
        self.traceparent = ""
        if job.span is not None and job.span.is_recording():
            self.span = _tracer().start_span(
                "edge.wafer",
                context=trace.set_span_in_context(job.span),
                attributes={
                    "waferscope.result_id": result_id,
                    "waferscope.wafer.index": wafer_index,
                },
            )
            self.traceparent = tracing.traceparent_of(self.span)

    @contextmanager
    def active(self) -> Iterator[None]:
        """The wafer's fields in the log context, its span current."""
        with correlation(**self.fields), trace.use_span(self.span, end_on_exit=False):
            yield

    def log(self, logger: logging.Logger, level: int, msg: str, *args: Any) -> None:
        if logger.isEnabledFor(level):
            with self.active():
                logger.log(level, msg, *args)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A child span for work done now (``edge.validate``)."""
        if not self.span.is_recording():
            yield
            return
        with _tracer().start_as_current_span(name, context=trace.set_span_in_context(self.span)):
            yield

    def timed(
        self, name: str, start_ns: int, end_ns: int, attributes: dict[str, Any] | None = None
    ) -> None:
        """A child span for work measured already (its batch's engine run, the commit)."""
        if not self.span.is_recording():
            return
        span = _tracer().start_span(
            name,
            context=trace.set_span_in_context(self.span),
            start_time=start_ns,
            attributes=attributes,
        )
        span.end(end_time=max(start_ns, end_ns))

    def identify(self, result: result_pb2.WaferResult) -> None:
        """Add what the result says about the wafer (lot, wafer id, pattern) to fields and span."""
        w = result.wafer
        for key, value in (
            ("lot_id", w.lot_id),
            ("wafer_id", w.wafer_id),
            ("tester_id", w.tester_id),
        ):
            if value:
                self.fields[key] = value
        if self.span.is_recording():
            self.span.set_attributes(
                {
                    "waferscope.lot_id": w.lot_id,
                    "waferscope.wafer_id": w.wafer_id,
                    "waferscope.pattern": result.pattern.name,
                    "waferscope.confidence": result.confidence,
                    "waferscope.review": result.review_required,
                }
            )

    def classified(
        self, result: result_pb2.WaferResult, began_ns: int, ended_ns: int, batch: int
    ) -> None:
        """Spans for the engine run and the explanation of the wafer's batch (the pipeline
        measured both per wafer, as its share of the batch), then the 'classified' line."""
        infer_end = min(ended_ns, began_ns + int(result.timings.infer_ms * batch * 1e6))
        size = {"waferscope.batch.size": batch}
        self.timed("edge.infer", began_ns, infer_end, size)
        self.timed("edge.explain", infer_end, ended_ns, size)
        self.identify(result)
        review = f", review: {result.review_detail or 'yes'}" if result.review_required else ""
        self.log(
            log,
            logging.INFO,
            "classified as %s (confidence %.2f%s)",
            result.pattern.name,
            result.confidence,
            review,
        )

    def committed(
        self, result: result_pb2.WaferResult, began_ns: int, ended_ns: int, batch: int
    ) -> None:
        """The commit span (the transaction that held the wafer), the line; the span ends."""
        self.timed("edge.commit", began_ns, ended_ns, {"waferscope.batch.size": batch})
        self.log(log, logging.DEBUG, "committed as result #%d", result.sequence)
        self.end()

    def end(self, error: str | None = None) -> None:
        if not self.span.is_recording():
            return
        if error:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()


# --------------------------------------------------------------------------- the MQTT link
def publish_span(row: OutboxRow) -> Span:
    """``edge.publish`` for one outbox row, a child of its wafer's span (no span when tracing
    is off; a row stored with a traceparent then still passes that traceparent on)."""
    parent = tracing.parent_context(row.traceparent)
    return _tracer().start_span(
        "edge.publish",
        context=parent if parent is not None else trace.set_span_in_context(INVALID_SPAN),
        kind=SpanKind.PRODUCER,
        attributes={"waferscope.message.kind": row.kind, "waferscope.message.id": row.ref_id},
    )


def published(span: Span, row: OutboxRow, topic: str, sequence: int) -> str:
    """Log the hand-over of one outbox row, end its span; the traceparent to send with it."""
    traceparent = tracing.traceparent_of(span)
    if log.isEnabledFor(logging.DEBUG):
        key = "result_id" if row.kind == "result" else "message_id"
        with correlation(**{key: row.ref_id}), trace.use_span(span, end_on_exit=False):
            log.debug("publishing %s #%d (outbox %d) on %s", row.kind, sequence, row.id, topic)
    if span.is_recording():
        span.set_attribute("messaging.destination.name", topic)
        span.end()
    return traceparent
