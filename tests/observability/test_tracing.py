"""waferscope.protocols.tracing: off by default, W3C traceparent in and out, sampling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from waferscope.protocols import tracing
from waferscope.protocols.logs import CorrelationFilter

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"


def test_off_by_default_nothing_is_recorded() -> None:
    tracing.shutdown_tracing()
    assert not tracing.enabled()
    span = tracing.get_tracer("x").start_span("nothing")
    assert not span.is_recording()
    assert tracing.traceparent_of(span) == ""
    assert not tracing.setup_tracing(tracing.TracingSettings(enabled=False), role="edge")


def test_a_span_round_trips_through_its_traceparent(spans: InMemorySpanExporter) -> None:
    span = tracing.get_tracer("x").start_span("edge side")
    traceparent = tracing.traceparent_of(span)
    context = tracing.parent_context(traceparent)
    assert context is not None
    child = tracing.get_tracer("x").start_span("hub side", context=context)
    child.end()
    span.end()
    hub_side, edge_side = spans.get_finished_spans()
    assert hub_side.parent is not None and edge_side.context is not None
    assert hub_side.parent.span_id == edge_side.context.span_id
    assert hub_side.parent.trace_id == edge_side.context.trace_id
    assert hub_side.parent.is_remote
    assert hub_side.resource.attributes["service.name"] == "waferscope-test"
    assert hub_side.resource.attributes["waferscope.role"] == "test"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-0x{TRACE[2:]}-{SPAN}-01",
    ],
)
def test_a_bad_traceparent_is_no_parent(bad: str) -> None:
    assert tracing.parent_context(bad) is None


def test_a_later_version_with_more_fields_is_read() -> None:
    context = tracing.parent_context(f"01-{TRACE}-{SPAN}-01-whatever")
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == int(TRACE, 16)


def test_user_properties_and_the_otlp_url() -> None:
    assert tracing.from_user_properties([("a", "b"), ("traceparent", TRACEPARENT)]) == TRACEPARENT
    assert tracing.from_user_properties(None) == ""
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"


def test_sampling_follows_the_parent() -> None:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(
        tracing.TracingSettings(enabled=True, sample_ratio=0.0), role="hub", exporter=exporter
    )
    try:
        tracer = tracing.get_tracer("x")
        tracer.start_span("own root").end()  # ratio 0: not kept
        tracer.start_span("child", context=tracing.parent_context(TRACEPARENT)).end()  # sampled
        tracer.start_span("child", context=tracing.parent_context(TRACEPARENT[:-2] + "00")).end()
    finally:
        tracing.shutdown_tracing()
    (kept,) = exporter.get_finished_spans()
    assert kept.name == "child" and kept.context is not None
    assert kept.context.trace_id == int(TRACE, 16)


def test_within_puts_a_remote_span_in_the_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.INFO, logger="waferscope.test"):
        with tracing.within(TRACEPARENT):
            logging.getLogger("waferscope.test").info("inside")
        with tracing.within(""):
            logging.getLogger("waferscope.test").info("outside")
    inside, outside = caplog.records
    assert inside.trace_id == TRACE and inside.span_id == SPAN  # type: ignore[attr-defined]
    assert not hasattr(outside, "trace_id")


def test_a_hub_without_tracing_still_logs_the_edges_trace_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data_dir: Path
) -> None:
    from hub_data import results
    from hub_testing import hub_config

    from waferscope.hub.app import Hub
    from waferscope.hub.ingest.handler import Incoming
    from waferscope.protocols import messages, topics

    tracing.shutdown_tracing()
    (result,) = results(data_dir, 1, device_id="edge-07")
    caplog.handler.addFilter(CorrelationFilter())
    hub = Hub(hub_config(tmp_path))
    try:
        item = Incoming(
            topics.result_topic("edge-07", site="fab3"), messages.encode(result), TRACEPARENT
        )
        with caplog.at_level(logging.DEBUG, logger="waferscope.hub.ingest"):
            assert hub.writer.handle([item])
    finally:
        hub.stop()
    about = [r for r in caplog.records if getattr(r, "result_id", None) == result.result_id]
    assert {r.getMessage() for r in about} == {"received result from edge-07", "result stored"}
    assert {r.trace_id for r in about} == {TRACE}  # type: ignore[attr-defined]
