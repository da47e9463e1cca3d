"""Fixtures of the monitoring tests: promtool, and the metric names the edge and the hub really
export (from their metrics objects and from a running hub)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from monitoring_support import (
    JWT_SECRET,
    Exported,
    RunningHub,
    fed_messages,
    feed,
    parse_exposition,
    with_children,
)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed (Debian package 'prometheus'; scripts/setup.sh installs it)"
        )
    return path


@pytest.fixture(scope="session")
def edge_exported() -> Exported:
    from prometheus_client import generate_latest

    from waferscope.edge.metrics import AgentMetrics

    m = AgentMetrics()
    m.bind(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    m.set_model("test-model", "CPUExecutionProvider", 1, 0.0)
    with_children(m)
    return parse_exposition(generate_latest(m.registry).decode())


@pytest.fixture
def running_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A hub on SQLite (no broker) behind litestar's test client."""
    from litestar.testing import TestClient

    from waferscope.hub.app import Hub
    from waferscope.hub.config import HubConfig

    config = HubConfig.model_validate(
        {
            "data_dir": str(tmp_path / "hub-data"),
            "mqtt": {"enabled": False},
            "auth": {"jwt_secret": JWT_SECRET},
            "database": {"url": f"sqlite:///{tmp_path / 'hub.sqlite'}"},
        }
    )
    hub = Hub(config)
    try:
        with TestClient(hub.web_app()) as client:
            yield RunningHub(hub, client)
    finally:
        hub.stop()


@pytest.fixture
def hub_exported(running_hub: RunningHub) -> Exported:
    """What a hub that has stored messages exports, plus every labelled family's labels."""
    from prometheus_client import generate_latest

    from waferscope.hub.metrics import HubMetrics

    feed(running_hub.hub, *fed_messages("edge-t01"))
    out = parse_exposition(running_hub.scrape())
    fresh = HubMetrics()
    with_children(fresh)
    out.merge(parse_exposition(generate_latest(fresh.registry).decode()))
    return out
