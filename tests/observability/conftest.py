"""Observability test fixtures: in-memory spans, a real broker, agent and hub configurations.

The edge's and the hub's test helpers (``edge_test_support``, ``hub_support``, ``hub_testing``)
are reused: their folders go on ``sys.path`` like their own conftests do."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# appended, not put first: the edge's tests import their own ``conftest`` by name
for folder in (HERE, HERE.parent / "edge", HERE.parent / "hub"):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from waferscope.protocols import tracing  # noqa: E402


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(
        tracing.TracingSettings(enabled=True), role="test", instance="test", exporter=exporter
    )
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    from edge_test_support import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()
