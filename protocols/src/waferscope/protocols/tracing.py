"""OpenTelemetry tracing for the edge and the hub: off unless configured, OTLP/HTTP when on.

Needs the ``tracing`` extra (``opentelemetry-api``, ``-sdk``, ``-exporter-otlp-proto-http``;
the edge and the hub install them). :func:`setup_tracing` installs this process's tracer
provider; until then, and after :func:`shutdown_tracing`, :func:`get_tracer` hands out a no-op
tracer whose spans record nothing but still carry a parent's context, so a hub without tracing
still logs the trace id an edge sent it.

The provider is kept here rather than as OpenTelemetry's global one (which can be set only once
per process), so that tests can install and remove providers freely; waferscope code asks
:func:`get_tracer` each time it starts a span.

Context crosses processes as a W3C ``traceparent`` string: :func:`traceparent_of` writes one
for a span, :func:`parent_context` reads one back (MQTT v5 user property ``traceparent`` from
edge to hub; the edge also keeps it with each outbox row, so a message sent after a restart
still belongs to its wafer's trace).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
OTLP_TRACES_PATH = "/v1/traces"

_propagator = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_lock = threading.Lock()
_noop = trace.NoOpTracer()


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What the edge's and the hub's ``[tracing]`` sections say (docs/observability.md)."""

    enabled: bool = False
    otlp_endpoint: str = "http://localhost:4318"
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    service_name: str = ""
    sample_ratio: float = 1.0
    export_timeout_s: float = 10.0

    @classmethod
    def of(cls, section: TracingSection) -> TracingSettings:
        """The settings a config's ``[tracing]`` section (edge or hub) gives."""
        return cls(
            enabled=section.enabled,
            otlp_endpoint=section.otlp_endpoint,
            otlp_headers=dict(section.otlp_headers),
            service_name=section.service_name,
            sample_ratio=section.sample_ratio,
        )


class TracingSection(Protocol):
    """The ``[tracing]`` section of the edge's and the hub's configuration models."""

    @property
    def enabled(self) -> bool: ...
    @property
    def otlp_endpoint(self) -> str: ...
    @property
    def otlp_headers(self) -> Mapping[str, str]: ...
    @property
    def service_name(self) -> str: ...
    @property
    def sample_ratio(self) -> float: ...


@dataclass(slots=True)
class _State:
    provider: TracerProvider | None = None
    tracers: dict[str, Tracer] = field(default_factory=dict)


_state = _State()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector address (``/v1/traces`` added when missing)."""
    url = endpoint.rstrip("/")
    return url if url.endswith(OTLP_TRACES_PATH) else url + OTLP_TRACES_PATH


def setup_tracing(
    settings: TracingSettings,
    *,
    role: str,
    instance: str | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Install this process's tracer provider; True when tracing is on.

    ``role`` names the service (``waferscope-<role>`` unless ``settings.service_name`` says
    otherwise), ``instance`` the process (the device id of an edge). ``exporter`` replaces the
    OTLP exporter and is fed span by span (tests); the OTLP exporter gets batches.
    """
    shutdown_tracing()
    if not settings.enabled:
        return False
    resource = Resource.create(
        {
            "service.name": settings.service_name or f"waferscope-{role}",
            "service.namespace": "waferscope",
            "service.instance.id": instance or f"{socket.gethostname()}-{os.getpid()}",
            "waferscope.role": role,
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBasedTraceIdRatio(settings.sample_ratio)
    )
    processor: SpanProcessor
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(
            endpoint=traces_url(settings.otlp_endpoint),
            headers=dict(settings.otlp_headers),
            timeout=settings.export_timeout_s,
        )
        processor = BatchSpanProcessor(otlp)
    else:
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    with _lock:
        _state.provider = provider
        _state.tracers = {}
    return True


def shutdown_tracing() -> None:
    """Export what is still buffered and go back to the no-op tracer."""
    with _lock:
        provider, _state.provider, _state.tracers = _state.provider, None, {}
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state.provider is not None


def get_tracer(name: str) -> Tracer:
    """The tracer of the installed provider, or the no-op tracer."""
    provider = _state.provider
    if provider is None:
        return _noop
    tracer = _state.tracers.get(name)
    if tracer is None:
        tracer = provider.get_tracer(name)
        _state.tracers[name] = tracer
    return tracer


# --------------------------------------------------------------------------- propagation
def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` of a span ("" when it has no valid context)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def parent_context(traceparent: str | None) -> Context | None:
    """A context whose current span is the remote parent named by ``traceparent`` (None when
    it is empty or not a valid W3C traceparent). The hub reads one per message, so this parses
    it directly (the propagator's extract costs several times as much)."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Make the span ``traceparent`` names current for the block, recording nothing: log lines
    written inside carry its trace and span ids (a no-op for an empty traceparent)."""
    context = parent_context(traceparent)
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def from_user_properties(properties: Iterable[tuple[str, str]] | None) -> str:
    """The ``traceparent`` among MQTT v5 user properties ("" when absent)."""
    for key, value in properties or ():
        if key == TRACEPARENT:
            return value
    return ""


def span_context(span: Span) -> Context:
    """A context with ``span`` as the parent, for ``start_span(context=...)``."""
    return trace.set_span_in_context(span)
