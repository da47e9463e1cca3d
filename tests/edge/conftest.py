"""Edge test fixtures: the model configuration, a real broker, agent configurations.

The tiny test bundle and the real data come from ``tests/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edge_test_support import agent_toml  # noqa: F401 (kept importable from here)

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


@pytest.fixture
def subscriber(broker):  # type: ignore[no-untyped-def]
    """A subscriber to every waferscope topic of the test broker, connected."""
    import time

    from edge_test_support import Subscriber, wait_for

    sub = Subscriber(broker.port)
    wait_for(sub.client.is_connected, 10, what="subscriber")
    time.sleep(0.2)
    yield sub
    sub.close()


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A root key and a release key it certifies (tests/support/release_keys.py)."""
    from release_keys import make_signer

    return make_signer(tmp_path / "keys")
