"""JSON log lines and the correlation context (waferscope.protocols.logs), in process."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from waferscope.protocols import logs, tracing
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import result_pb2


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger's output as JSON lines (our handler only; the level restored after)."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure_logging(
        "edge", "debug", "json", static={"device_id": "edge-07"}, stream=out
    )
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_the_documented_fields(stream: io.StringIO) -> None:
    logging.getLogger("waferscope.edge.worker").info("parsed: %d wafers", 3)
    (line,) = lines(stream)
    assert line["msg"] == "parsed: 3 wafers"
    assert line["level"] == "info"
    assert line["logger"] == "waferscope.edge.worker"
    assert line["role"] == "edge"
    assert line["device_id"] == "edge-07"
    assert isinstance(line["pid"], int)
    assert line["thread"] == threading.current_thread().name
    ts = str(line["ts"])
    assert ts.endswith("Z") and "T" in ts and len(ts) == len("2026-03-01T12:30:15.250Z")
    assert "result_id" not in line and "trace_id" not in line


def test_correlation_fields_nest_and_are_gone_after_the_block(stream: io.StringIO) -> None:
    log = logging.getLogger("waferscope.test")
    rid = new_message_id()
    with logs.correlation(source="LOT1_07.xml", correlation_id="abc", tester_id=None):
        log.info("file")
        with logs.correlation(result_id=rid, lot_id="LOT1", wafer_id="07", wafer_index=0):
            log.info("wafer")
        with logs.correlation(source="other.xml", lot_id=""):
            log.info("inner source wins")
    log.info("outside")
    file_, wafer, inner, outside = lines(stream)
    assert file_["source"] == "LOT1_07.xml" and file_["correlation_id"] == "abc"
    assert "tester_id" not in file_ and "result_id" not in file_
    assert wafer["result_id"] == rid and wafer["lot_id"] == "LOT1" and wafer["wafer_index"] == "0"
    assert wafer["source"] == "LOT1_07.xml"
    assert inner["source"] == "other.xml" and "lot_id" not in inner
    assert not {"source", "result_id", "correlation_id"} & outside.keys()


def test_each_thread_has_its_own_context(stream: io.StringIO) -> None:
    log = logging.getLogger("waferscope.test")
    inside = threading.Event()
    logged = threading.Event()

    def other() -> None:
        inside.wait(5)
        log.info("other thread")
        logged.set()

    thread = threading.Thread(target=other, name="other")
    thread.start()
    with logs.correlation(result_id="r-1"):
        inside.set()
        logged.wait(5)
        log.info("this thread")
    thread.join(5)
    by_thread = {line["thread"]: line for line in lines(stream)}
    assert "result_id" not in by_thread["other"]
    assert by_thread[threading.current_thread().name]["result_id"] == "r-1"


def test_exceptions_and_extra_fields_are_in_the_line(stream: io.StringIO) -> None:
    log = logging.getLogger("waferscope.test")
    try:
        raise ValueError("bad map")
    except ValueError:
        with logs.correlation(result_id="from-context", lot_id="LOT1"):
            log.exception("failed", extra={"batch": 4, "result_id": "from-extra"})
    (line,) = lines(stream)
    assert line["level"] == "error" and line["batch"] == 4
    assert line["result_id"] == "from-extra" and line["lot_id"] == "LOT1"
    assert "Traceback" in str(line["exc"]) and "ValueError: bad map" in str(line["exc"])


def test_the_current_span_puts_its_ids_in_the_line(
    stream: io.StringIO, spans: InMemorySpanExporter
) -> None:
    log = logging.getLogger("waferscope.test")
    with tracing.get_tracer("test").start_as_current_span("work"):
        log.info("inside")
    log.info("outside")
    inside, outside = lines(stream)
    (span,) = spans.get_finished_spans()
    assert span.context is not None
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["span_id"] == format(span.context.span_id, "016x")
    assert "trace_id" not in outside


def test_result_fields_name_the_wafer() -> None:
    r = result_pb2.WaferResult(result_id="r-9", device_id="edge-07", correlation_id="c")
    r.wafer.lot_id, r.wafer.wafer_id, r.wafer.source_name = "LOT9", "12", "lot9.stdf"
    r.wafer.wafer_index, r.wafer.tester_id = 2, "T-1"
    assert logs.result_fields(r) == {
        "result_id": "r-9",
        "device_id": "edge-07",
        "correlation_id": "c",
        "source": "lot9.stdf",
        "lot_id": "LOT9",
        "wafer_id": "12",
        "wafer_index": "2",
        "tester_id": "T-1",
    }


def test_text_lines_show_the_wafer_and_configuring_again_replaces_the_handler() -> None:
    out, again = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    level = root.level
    first = logs.configure_logging(
        "hub", "info", "text", static={"worker": 0}, text_prefix="[hub w0] ", stream=out
    )
    try:
        with logs.correlation(result_id="r-1", device_id="edge-07"):
            logging.getLogger("waferscope.hub.ingest").info("stored")
        second = logs.configure_logging("hub", "info", "json", stream=again)
        assert first not in root.handlers and second in root.handlers
        logging.getLogger("waferscope.hub.ingest").info("json now")
    finally:
        root.removeHandler(second)
        root.setLevel(level)
    text = out.getvalue()
    assert " INFO [hub w0] waferscope.hub.ingest: stored [result_id=r-1 device_id=edge-07]" in text
    assert "json now" not in text
    assert json.loads(again.getvalue())["msg"] == "json now"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.configure_logging("edge", "info", "xml", stream=io.StringIO())
