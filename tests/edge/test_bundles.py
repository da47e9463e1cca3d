"""Bundles are verified before use; a bad one is refused with a clear error and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from waferscope.edge.bundles import load_bundle
from waferscope.edge.config import ModelConfig
from waferscope.edge.engine import ModelSlot, load_model
from waferscope.protocols.bundle import BundleError, read_manifest, write_manifest


def test_good_bundle_loads(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.pattern_classes[-1] == "none"
    assert bundle.encoding.version == 1
    assert bundle.engine_path.name == "model.int8.onnx"


def _edit_manifest(folder: Path, change: str) -> None:
    manifest = read_manifest(folder)
    if change == "classes":
        manifest.pattern_classes.pop()
    elif change == "encoding":
        manifest.encoding.size = 96
    elif change == "channels":
        manifest.encoding.channels[0] = "fail_any"
    elif change == "version":
        manifest.encoding.version = 2
    write_manifest(folder, manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("tamper", "sha256"),
        ("truncate", "bytes"),
        ("missing", "missing"),
        ("classes", "patterns"),
        ("channels", "channels"),
        ("version", "encoding version 2"),
        ("no-manifest", "manifest"),
    ],
)
def test_bad_bundles_are_refused_with_the_reason(
    bundle_copy: Path, change: str, message: str
) -> None:
    engine = bundle_copy / "model.int8.onnx"
    if change == "tamper":
        data = bytearray(engine.read_bytes())
        data[-10] ^= 0xFF
        engine.write_bytes(bytes(data))
    elif change == "truncate":
        engine.write_bytes(engine.read_bytes()[:1000])
    elif change == "missing":
        (bundle_copy / "head.npz").unlink()
    elif change == "no-manifest":
        (bundle_copy / "manifest.json").unlink()
    else:
        _edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_engine_with_wrong_input_size_is_refused_at_warm_up(
    bundle_copy: Path, model_config: ModelConfig
) -> None:
    _edit_manifest(bundle_copy, "encoding")  # manifest says 96 px, the engine takes 64
    with pytest.raises(BundleError, match="engine fails on a 1x"):
        load_model(bundle_copy, model_config)


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
