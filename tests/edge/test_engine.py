"""The agent's model: configured backends, hot swap that keeps the old model on a bad bundle."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from waferscope.edge.bundles import load_bundle
from waferscope.edge.config import ModelConfig
from waferscope.edge.engine import ModelSlot, load_model
from waferscope.edge.runners.tensorrt_native import TensorRtRunner
from waferscope.protocols.bundle import BundleError
from waferscope.protocols.inference import RunnerUnavailableError


def test_the_configured_onnxruntime_model_loads(
    bundle_dir: Path, model_config: ModelConfig
) -> None:
    model = load_model(bundle_dir, model_config)
    assert model.runner.backend == "onnxruntime"
    assert model.runner.provider == "CPUExecutionProvider"
    assert model.version == "tiny-test-1"


def test_hot_swap_keeps_the_old_model_when_the_new_one_is_bad(
    bundle_dir: Path, bundle_copy: Path, model_config: ModelConfig
) -> None:
    slot = ModelSlot(load_model(bundle_dir, model_config), model_config)
    before = slot.current
    data = json.loads((bundle_copy / "manifest.json").read_text())
    data["modelVersion"] = "tiny-test-2"
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    head = bundle_copy / "head.npz"
    head.write_bytes(head.read_bytes() + b"x")
    with pytest.raises(BundleError):
        slot.swap(bundle_copy)
    assert slot.current is before
    assert slot.last_error and "head.npz" in slot.last_error
    head.write_bytes(head.read_bytes()[:-1])
    swapped = slot.swap(bundle_copy)
    assert slot.current is swapped and swapped.version == "tiny-test-2"
    out = swapped.infer(np.zeros((2, 3, 64, 64), np.float32))
    assert out.pattern_logits.shape == (2, 9)


def test_watcher_swaps_when_the_manifest_changes(
    bundle_copy: Path, model_config: ModelConfig
) -> None:
    from edge_test_support import wait_for

    from waferscope.edge.engine import BundleWatcher

    slot = ModelSlot(load_model(bundle_copy, model_config), model_config)
    watcher = BundleWatcher(slot, bundle_copy, interval_s=0.1)
    watcher.start()
    try:
        data = json.loads((bundle_copy / "manifest.json").read_text())
        data["modelVersion"] = "tiny-test-3"
        (bundle_copy / "manifest.json").write_text(json.dumps(data))
        wait_for(lambda: slot.current.version == "tiny-test-3", 10, what="hot swap")
    finally:
        watcher.stop()


def test_missing_tensorrt_is_reported_not_crashed(bundle_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; the runner contract tests cover it")
    bundle = load_bundle(bundle_dir)
    with pytest.raises(RunnerUnavailableError, match="tensorrt"):
        TensorRtRunner(bundle.engine_path, input_shape=bundle.encoding.shape, cache_dir=tmp_path)
