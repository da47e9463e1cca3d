"""Edge test fixtures: a real bundle (built once with torch, shared by workers), real data."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from waferscope.edge.config import ModelConfig


def _cache_root() -> Path:
    return Path(
        os.environ.get(
            "WAFERSCOPE_TEST_CACHE", Path(tempfile.gettempdir()) / "waferscope-test-cache"
        )
    )


@pytest.fixture(scope="session")
def val_npz(data_dir: Path) -> Path:
    return data_dir / "wm811k" / "val.npz"


@pytest.fixture(scope="session")
def built_bundle(val_npz: Path) -> tuple[Path, Path]:
    """(bundle folder, torch state-dict file) of the tiny test model; read-only, shared."""
    pytest.importorskip(
        "torch", reason="the test bundle is built with torch (a trainer dependency)"
    )
    import edge_test_bundle

    return edge_test_bundle.cached_bundle(val_npz, _cache_root())


@pytest.fixture(scope="session")
def bundle_dir(built_bundle: tuple[Path, Path]) -> Path:
    return built_bundle[0]


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle a test may change."""
    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    return target


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
