"""TensorRT engines for devices that have TensorRT (Jetson and other NVIDIA boxes).

Kept small and isolated: nothing else in the trainer imports ``tensorrt``. The machines this
project is developed on have no GPU and no TensorRT, so :func:`build_engine` is exercised only
where TensorRT is installed (its test skips elsewhere, saying why); what runs without TensorRT
(calibration batching, QDQ detection, adding an engine to a bundle) is tested everywhere.

INT8 comes from the same calibration data as the onnxruntime engine, in one of two ways:

* from the bundle's **QDQ INT8 ONNX** (the default): the scales are in the graph (TensorRT's
  explicit quantisation), so TensorRT needs no calibrator;
* from the **FP32 ONNX** plus calibration maps: an entropy calibrator feeds the same encoded
  training maps the onnxruntime quantiser saw (implicit quantisation; deprecated in TensorRT 10
  but still available).

An engine is specific to the GPU, TensorRT version and platform it was built on: build it on the
device (or an identical one) and add it to the bundle with :func:`add_to_bundle`, which records
the platform name in the manifest.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from waferscope.protocols import bundle as contract
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole


class TensorRTUnavailableError(WaferscopeError):
    """TensorRT (or a CUDA GPU) is not available on this machine."""


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


@dataclass(frozen=True)
class TrtOptions:
    int8: bool = True
    fp16: bool = True
    workspace_mb: int = 1024
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64


def calibration_batches(
    x: npt.NDArray[np.float32], batch: int
) -> Iterator[npt.NDArray[np.float32]]:
    """Contiguous float32 batches of exactly ``batch`` maps (the last, short one is dropped)."""
    if batch < 1:
        raise ValueError("batch must be positive")
    for start in range(0, len(x) - batch + 1, batch):
        yield np.ascontiguousarray(x[start : start + batch], dtype=np.float32)


def is_qdq_model(path: Path) -> bool:
    """Whether an ONNX file holds QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def _calibrator(trt: Any, x: npt.NDArray[np.float32], batch: int, cache: Path) -> Any:
    import torch

    batches = calibration_batches(x, batch)

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.device_batch: Any = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            part = next(batches, None)
            if part is None:
                return None
            self.device_batch = torch.from_numpy(part).cuda()
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    input_shape: tuple[int, int, int],
    calibration: npt.NDArray[np.float32] | None = None,
    options: TrtOptions | None = None,
) -> Path:
    """Build and serialise a TensorRT engine (:class:`TensorRTUnavailableError` without TRT)."""
    if not tensorrt_available():
        raise TensorRTUnavailableError("TensorRT is not installed here (pip package `tensorrt`)")
    import tensorrt as trt  # type: ignore[import-not-found]

    opts = options or TrtOptions()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WaferscopeError(f"{onnx_path}: TensorRT cannot parse the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(
        name,
        (opts.min_batch, *input_shape),
        (opts.opt_batch, *input_shape),
        (opts.max_batch, *input_shape),
    )
    config.add_optimization_profile(profile)
    if opts.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        if not is_qdq_model(onnx_path):
            if calibration is None:
                raise WaferscopeError("INT8 from an FP32 model needs calibration maps")
            cache = engine_path.with_suffix(".calib")
            config.int8_calibrator = _calibrator(trt, calibration, opts.opt_batch, cache)
            config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise WaferscopeError(f"{onnx_path}: TensorRT could not build an engine")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def add_to_bundle(bundle: Path, engine: Path, platform: str) -> Path:
    """Copy a built engine into ``bundle`` as ``tensorrt/<platform>.engine`` and list it in the
    manifest (role TENSORRT_ENGINE, with its platform). The manifest's signature is cleared:
    the hub signs the changed bundle again."""
    if not platform or not all(c.isalnum() or c in "-_." for c in platform):
        raise WaferscopeError(f"platform {platform!r}: use letters, digits, '-', '_' or '.'")
    manifest = contract.verify(bundle)
    rel = f"tensorrt/{platform}.engine"
    target = bundle / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(engine, target)
    kept = [f for f in manifest.files if f.path != rel]
    del manifest.files[:]
    manifest.files.extend(kept)
    entry = contract.describe_file(bundle, rel, BundleFileRole.BUNDLE_FILE_ROLE_TENSORRT_ENGINE)
    entry.platform = platform
    manifest.files.append(entry)
    manifest.ClearField("signature")
    contract.write_manifest(bundle, manifest)
    return target
