"""End-to-end fixtures: the whole appliance (broker, hub, edge agents) as real processes on
loopback, started by the tests, bounded in time, removed afterwards."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from waferscope.appliance import Appliance, ApplianceOptions
from waferscope.appliance.broker import INSTALL_HINT, mosquitto_binary
from waferscope.appliance.processes import ApplianceError, free_port


@pytest.fixture
def start_appliance(tmp_path: Path) -> Iterator[Callable[..., Appliance]]:
    try:
        mosquitto_binary()
    except ApplianceError:
        pytest.skip(INSTALL_HINT)
    started: list[Appliance] = []

    def start(**options: Any) -> Appliance:
        # ports the system picks, not the demo's 8400/8401..., which parallel tests would share
        options.setdefault("hub_port", free_port())
        options.setdefault("edge_ports", [free_port() for _ in range(options.get("edges", 2))])
        app = Appliance(tmp_path / f"appliance{len(started)}", ApplianceOptions(**options))
        started.append(app)
        app.prepare()
        app.start()
        return app

    yield start
    for app in started:
        app.stop()
