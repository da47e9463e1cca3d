"""Edge test fixtures: the model configuration, a real broker, agent configurations.

The tiny test bundle and the real data come from ``tests/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from waferscope.edge.config import ModelConfig


@pytest.fixture
def model_config() -> ModelConfig:
    return ModelConfig(threads=1, max_batch=16, warmup_runs=1, providers=["cpu"])


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    from edge_test_support import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def agent_toml(
    tmp_path: Path, bundle: Path, broker_port: int, extra: str = "", *, panel: bool = False
) -> Path:
    """A configuration for a test agent: real bundle, real broker, files under tmp_path."""
    text = f"""device_id = "edge-01"
site = "fab3"
tester_id = "T-01"
data_dir = "data"
[model]
path = "{bundle}"
threads = 1
max_batch = 16
warmup_runs = 1
providers = ["cpu"]
watch = false
[ingest.hot_folder]
settle_s = 0.3
poll_interval_s = 0.1
[mqtt]
port = {broker_port}
reconnect_min_s = 1
reconnect_max_s = 2
heartbeat_s = 2
[panel]
enabled = {"true" if panel else "false"}
port = 0
{extra}
"""
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return path
