"""The TensorRT builder: what can be checked without a GPU runs everywhere; the build itself
needs TensorRT and an NVIDIA GPU and is skipped elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols import bundle as contract
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole
from waferscope.trainer.tensorrt_build import (
    TensorRTUnavailableError,
    add_to_bundle,
    build_engine,
    calibration_batches,
    tensorrt_available,
)


def test_calibration_batches() -> None:
    x = np.arange(10 * 3 * 4 * 4, dtype=np.float32).reshape(10, 3, 4, 4)
    parts = list(calibration_batches(x, 4))
    assert [p.shape[0] for p in parts] == [4, 4]
    assert all(p.flags.c_contiguous and p.dtype == np.float32 for p in parts)
    np.testing.assert_array_equal(parts[1], x[4:8])
    with pytest.raises(ValueError):
        list(calibration_batches(x, 0))


@pytest.mark.slow
def test_add_engine_to_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    fake = tmp_path / "e.engine"
    fake.write_bytes(b"not a real engine, only the bookkeeping is tested")
    target = add_to_bundle(copy, fake, "jetson-orin-trt10")
    manifest = contract.verify(copy)
    entry = next(f for f in manifest.files if f.path == "tensorrt/jetson-orin-trt10.engine")
    assert entry.role == BundleFileRole.BUNDLE_FILE_ROLE_TENSORRT_ENGINE
    assert entry.platform == "jetson-orin-trt10" and target.is_file()
    add_to_bundle(copy, fake, "jetson-orin-trt10")  # replacing keeps one entry
    assert sum(f.path.startswith("tensorrt/") for f in contract.verify(copy).files) == 1


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_build_without_tensorrt_says_so(tmp_path: Path) -> None:
    with pytest.raises(TensorRTUnavailableError, match="TensorRT is not installed"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", input_shape=(3, 64, 64))


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not tensorrt_available(), reason="needs TensorRT and an NVIDIA GPU")
def test_build_int8_engine(tiny_bundle: Path, tmp_path: Path) -> None:  # pragma: no cover
    engine = build_engine(
        tiny_bundle / "model.int8.onnx", tmp_path / "m.engine", input_shape=(3, 64, 64)
    )
    assert engine.stat().st_size > 0
