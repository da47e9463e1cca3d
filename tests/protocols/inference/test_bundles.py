"""Bundles are verified before use; a bad one is refused with a clear error and nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscope.protocols.bundle import BundleError, read_manifest, write_manifest
from waferscope.protocols.inference import load_bundle, load_model


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


def test_engine_with_wrong_input_size_is_refused_at_warm_up(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, "encoding")  # manifest says 96 px, the engine takes 64
    with pytest.raises(BundleError, match="engine fails on a 1x"):
        load_model(bundle_copy, threads=1)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "nothing")
