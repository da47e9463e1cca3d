"""onnxruntime backend: CPU everywhere, CUDA and TensorRT execution providers where installed.

onnxruntime is the optional ``inference`` extra of waferscope-protocols
(``pip install 'waferscope-protocols[inference]'``). It is imported when a function here first
needs it, never when this module is imported; without it those calls raise
:class:`InferenceExtraMissingError`, which names the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES, BundleError
from waferscope.protocols.inference.runner import F32, EngineOutputs, RunnerUnavailableError

EXTRA = "inference"
PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class InferenceExtraMissingError(RunnerUnavailableError):
    """onnxruntime is not installed: the ``inference`` extra of waferscope-protocols is missing."""


def onnxruntime() -> Any:
    """The onnxruntime module (InferenceExtraMissingError when it is not installed)."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise InferenceExtraMissingError(
            f"onnxruntime is not installed ({exc}); install the {EXTRA!r} extra: "
            f"pip install 'waferscope-protocols[{EXTRA}]'"
        ) from None


def available_providers() -> list[str]:
    """onnxruntime's execution providers on this machine, best first."""
    return [str(p) for p in onnxruntime().get_available_providers()]


def choose_providers(preference: Sequence[str]) -> list[str]:
    """The preferred providers that are installed, in order, always ending with CPU.

    ``preference`` holds short names: 'tensorrt', 'cuda', 'cpu'."""
    unknown = [p for p in preference if p not in PROVIDER_NAMES]
    if unknown:
        raise ValueError(f"unknown execution provider(s) {unknown}; known: {list(PROVIDER_NAMES)}")
    present = set(available_providers())
    chosen = [PROVIDER_NAMES[p] for p in preference if PROVIDER_NAMES[p] in present]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeRunner:
    """An onnxruntime InferenceSession over a bundle's ONNX engine."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        ort = onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        chosen = choose_providers(providers)
        provider_options: list[dict[str, str]] = []
        for name in chosen:
            opts: dict[str, str] = {}
            if name == "TensorrtExecutionProvider":
                opts = {"trt_int8_enable": "True"}
                if cache_dir is not None:
                    opts |= {
                        "trt_engine_cache_enable": "True",
                        "trt_engine_cache_path": str(cache_dir),
                    }
            provider_options.append(opts)
        try:
            self._session: Any = ort.InferenceSession(
                str(model_path),
                sess_options=options,
                providers=chosen,
                provider_options=provider_options,
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BundleError(f"{model_path}: onnxruntime cannot load the engine ({exc})") from None
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(outputs):
            raise BundleError(
                f"{model_path}: engine I/O {inputs} -> {outputs} is not the bundle contract's "
                f"{INPUT_NAME} -> {list(OUTPUT_NAMES)}"
            )
        used = self._session.get_providers()
        if not used:
            raise RunnerUnavailableError("onnxruntime offers no execution provider")
        self._provider = str(used[0])

    @property
    def backend(self) -> str:
        return "onnxruntime"

    @property
    def provider(self) -> str:
        return self._provider

    def run(self, batch: F32) -> EngineOutputs:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        pattern, cause, features, embedding = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return EngineOutputs(
            pattern_logits=np.asarray(pattern, np.float32),
            cause_logits=np.asarray(cause, np.float32),
            feature_map=np.asarray(features, np.float32),
            embedding=np.asarray(embedding, np.float32),
        )

    def close(self) -> None:
        del self._session
