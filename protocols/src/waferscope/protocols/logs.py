"""Logs of every waferscope process: human text or one JSON object per line, with a correlation
context that follows one wafer from the tester file to the hub's database.

Correlation context: code that works on one wafer (or one file, or one message) wraps its log
calls in ``with correlation(result_id=..., source=...)``; a :class:`CorrelationFilter` on the
handler copies the fields in effect (a :mod:`contextvars` variable, so threads and asyncio tasks
keep their own) onto every record, and adds ``trace_id``/``span_id`` when an OpenTelemetry span
is current (only where ``opentelemetry-api`` is installed: the edge and the hub).

A JSON line holds ``ts`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``, ``msg``, ``role``
(``edge``, ``hub``, ...), ``pid``, ``thread``, the process's own fields given to
:func:`configure_logging` (``device_id`` on an edge, ``worker`` on the hub), the correlation
fields in effect, anything passed with ``extra=``, and ``exc`` (the formatted traceback) when
there is one. docs/observability.md lists the fields.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

from waferscope.protocols.pb import alert_pb2, result_pb2

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

CORRELATION_FIELDS: tuple[str, ...] = (
    "result_id",  # WaferResult.result_id (UUIDv7): one wafer, edge and hub alike
    "message_id",  # the id of another message (alert_id, ack_id, command_id)
    "correlation_id",  # the submitter's id of the file (gRPC), else the file's SHA-256
    "device_id",  # the edge the wafer or message belongs to
    "source",  # the tester file's name
    "lot_id",
    "wafer_id",  # the wafer's id within its lot
    "wafer_index",  # its position in the source file
    "tester_id",
)
TRACE_FIELDS: tuple[str, ...] = ("trace_id", "span_id")

# the fields in effect, as an immutable tuple of pairs (a context variable's default is shared)
_context: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("waferscope_log_context", default=())

# LogRecord's own attributes: anything else on a record came with ``extra=``
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "correlation", "taskName"}
)


def current() -> dict[str, str]:
    """The correlation fields in effect here."""
    return dict(_context.get())


@contextmanager
def correlation(**fields: object) -> Iterator[dict[str, str]]:
    """Add fields to the correlation context for the ``with`` block (empty values are skipped;
    an inner block's value wins over an outer one's)."""
    merged = dict(_context.get())
    for key, value in fields.items():
        if value is not None and value != "":
            merged[key] = str(value)
    token = _context.set(tuple(merged.items()))
    try:
        yield merged
    finally:
        _context.reset(token)


def result_fields(result: result_pb2.WaferResult) -> dict[str, str]:
    """The correlation fields of one wafer's result."""
    w = result.wafer
    fields = {
        "result_id": result.result_id,
        "device_id": result.device_id,
        "correlation_id": result.correlation_id,
        "source": w.source_name,
        "lot_id": w.lot_id,
        "wafer_id": w.wafer_id,
        "wafer_index": str(w.wafer_index),
        "tester_id": w.tester_id,
    }
    return {k: v for k, v in fields.items() if v}


def alert_fields(alert: alert_pb2.Alert) -> dict[str, str]:
    """The correlation fields of an alert (its id is the ``message_id``)."""
    fields = {
        "message_id": alert.alert_id,
        "device_id": alert.device_id,
        "tester_id": alert.tester_id,
        "lot_id": alert.lot_id,
    }
    return {k: v for k, v in fields.items() if v}


# --------------------------------------------------------------------------- trace ids
def _trace_reader() -> Callable[[], tuple[str, str] | None]:
    """Reads the current span's ids (hex), or a no-op where OpenTelemetry is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:  # a plain protocols install
        return lambda: None

    def ids() -> tuple[str, str] | None:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    return ids


class CorrelationFilter(logging.Filter):
    """Puts the correlation fields (and the current span's ids) on every record it sees, as
    attributes and, all together, as ``record.correlation``. Values given with ``extra=`` win."""

    def __init__(self) -> None:
        super().__init__()
        self._trace_ids = _trace_reader()

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(_context.get())
        ids = self._trace_ids()
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
        for key, value in fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.correlation = fields
        return True


# --------------------------------------------------------------------------- formatters
def _timestamp(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the keys)."""

    def __init__(self, role: str, static: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.role = role
        self.static = {k: v for k, v in (static or {}).items() if v is not None}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "role": self.role,
            "pid": record.process,
            "thread": record.threadName,
        }
        doc.update(self.static)
        correlation: Mapping[str, str] | None = getattr(record, "correlation", None)
        for key, value in (current() if correlation is None else correlation).items():
            doc[key] = getattr(record, key, value)  # a value given with extra= wins
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in doc and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))


TEXT_FIELDS = ("result_id", "message_id", "source", "lot_id", "wafer_id", "device_id")


class TextFormatter(logging.Formatter):
    """``time LEVEL [prefix ]logger: message [result_id=... source=...]`` for people."""

    def __init__(self, prefix: str = "", hide: Mapping[str, str] | None = None) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
        self.hide = dict(hide or {})  # fields not worth repeating (e.g. the edge's own device)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        correlation: Mapping[str, str] = getattr(record, "correlation", None) or current()
        shown = [
            f"{k}={correlation[k]}"
            for k in TEXT_FIELDS
            if k in correlation and self.hide.get(k) != correlation[k]
        ]
        if not shown:
            return line
        first, nl, rest = line.partition("\n")  # keep a traceback below the line
        return f"{first} [{' '.join(shown)}]{nl}{rest}"


# --------------------------------------------------------------------------- set-up
def configure_logging(
    role: str,
    level: str = "info",
    fmt: str = "text",
    *,
    static: Mapping[str, object] | None = None,
    text_prefix: str = "",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send the process's logs to ``stream`` (stderr) as ``fmt`` ("text" or "json").

    ``static`` holds the process's own fields (``device_id``, ``worker``): every JSON line
    carries them. Calling it again replaces the handler an earlier call installed (handlers
    others added, such as a test runner's, stay).
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(CorrelationFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(role, static))
    else:
        hide = {k: str(v) for k, v in (static or {}).items() if v is not None}
        handler.setFormatter(TextFormatter(text_prefix, hide))
    handler.set_name(f"waferscope-{role}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "waferscope_handler", False):
            root.removeHandler(old)
            old.close()
    handler.waferscope_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
