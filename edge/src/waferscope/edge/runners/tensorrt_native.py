"""Native TensorRT backend (Jetson and other NVIDIA machines without onnxruntime-gpu).

Uses the ``tensorrt`` Python API (TensorRT 10: named I/O tensors, ``execute_async_v3``) and
NVIDIA's ``cuda-python`` bindings for memory and streams. cuda-python is what NVIDIA's current
TensorRT samples use (``samples/python/common_runtime.py``); pycuda is a third-party package that
needs compiling against the local CUDA toolkit, which is awkward on Jetson images, and it keeps a
context of its own that fights with other CUDA users in the process.

The engine comes from the bundle when it ships one built for this platform (role
TENSORRT_ENGINE, ``platform`` = :func:`platform_tag`), else it is built once from the bundle's
INT8 QDQ ONNX (explicit quantisation) and cached next to the database, keyed by the ONNX sha256,
the TensorRT version and the GPU.

Everything here is imported lazily: on a machine without ``tensorrt`` or ``cuda-python``
constructing the runner raises :class:`RunnerUnavailableError` naming the missing library.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES, BundleError, sha256_file
from waferscope.protocols.inference.runner import F32, EngineOutputs, RunnerUnavailableError


def _import(name: str, hint: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RunnerUnavailableError(f"the TensorRT runner needs {hint} ({exc})") from None


def load_cuda_runtime() -> Any:
    """cuda-python's runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return _import("cuda.cudart", "NVIDIA's cuda-python package (pip install cuda-python)")


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...) tuples; raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RunnerUnavailableError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else tuple(values)


def platform_tag(trt: Any, cudart: Any) -> str:
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    gpu = name.strip().replace(" ", "-").lower()
    return f"{gpu}-sm{props.major}{props.minor}-trt{trt.__version__}"


class TensorRtRunner:
    """A TensorRT engine with buffers for up to ``max_batch`` wafers."""

    def __init__(
        self,
        onnx_path: Path,
        *,
        input_shape: tuple[int, int, int],
        max_batch: int = 32,
        prebuilt: tuple[tuple[str, Path], ...] = (),
        cache_dir: Path | None = None,
    ) -> None:
        trt = _import("tensorrt", "NVIDIA's tensorrt Python package")
        cudart = load_cuda_runtime()
        count = _check(cudart.cudaGetDeviceCount())
        if not count:
            raise RunnerUnavailableError("no CUDA device is visible")
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._max_batch = max_batch
        self._input_shape = input_shape
        tag = platform_tag(trt, cudart)
        plan = self._engine_plan(onnx_path, tag, prebuilt, cache_dir)
        runtime = trt.Runtime(self._logger)
        self._engine = runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise BundleError(f"{onnx_path}: TensorRT cannot deserialise the engine")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        self._provider = f"TensorRT {trt.__version__} ({tag})"
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._allocate()

    # ------------------------------------------------------------------ engine
    def _engine_plan(
        self, onnx_path: Path, tag: str, prebuilt: tuple[tuple[str, Path], ...], cache: Path | None
    ) -> bytes:
        for platform, path in prebuilt:
            if platform == tag:
                return path.read_bytes()
        key = hashlib.sha256(f"{sha256_file(onnx_path)}|{tag}|{self._max_batch}".encode())
        cached = cache / f"{key.hexdigest()[:32]}.plan" if cache else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        plan = self._build(onnx_path)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".part")
            tmp.write_bytes(plan)
            tmp.replace(cached)
        return plan

    def _build(self, onnx_path: Path) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BundleError(f"{onnx_path}: TensorRT cannot parse the ONNX engine: {errors}")
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.INT8)  # honour the Q/DQ nodes (explicit quantisation)
        config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        c, h, w = self._input_shape
        opt = max(1, min(8, self._max_batch))
        profile.set_shape(INPUT_NAME, (1, c, h, w), (opt, c, h, w), (self._max_batch, c, h, w))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BundleError(f"{onnx_path}: TensorRT could not build an engine")
        return bytes(plan)

    def _allocate(self) -> None:
        c, h, w = self._input_shape
        self._context.set_input_shape(INPUT_NAME, (self._max_batch, c, h, w))
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            shape = tuple(self._context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * 4
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (int(ptr), nbytes)
            self._context.set_tensor_address(name, int(ptr))

    # ------------------------------------------------------------------ Runner
    @property
    def backend(self) -> str:
        return "tensorrt"

    @property
    def provider(self) -> str:
        return self._provider

    def run(self, batch: F32) -> EngineOutputs:
        cudart = self._cudart
        outputs: dict[str, F32] = {}
        for start in range(0, batch.shape[0], self._max_batch):
            part = np.ascontiguousarray(batch[start : start + self._max_batch], dtype=np.float32)
            self._context.set_input_shape(INPUT_NAME, part.shape)
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            ptr, _ = self._buffers[INPUT_NAME]
            _check(cudart.cudaMemcpyAsync(ptr, part.ctypes.data, part.nbytes, h2d, self._stream))
            if not self._context.execute_async_v3(self._stream):
                raise BundleError("TensorRT execution failed")
            host: dict[str, F32] = {}
            for name in OUTPUT_NAMES:
                shape = tuple(self._context.get_tensor_shape(name))
                out = np.empty(shape, dtype=np.float32)
                dptr, _ = self._buffers[name]
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, dptr, out.nbytes, d2h, self._stream))
                host[name] = out
            _check(cudart.cudaStreamSynchronize(self._stream))
            for name, value in host.items():
                outputs[name] = (
                    value if name not in outputs else np.concatenate([outputs[name], value])
                )
        return EngineOutputs(
            pattern_logits=outputs["pattern_logits"],
            cause_logits=outputs["cause_logits"],
            feature_map=outputs["feature_map"],
            embedding=outputs["embedding"],
        )

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        self._cudart.cudaStreamDestroy(self._stream)
