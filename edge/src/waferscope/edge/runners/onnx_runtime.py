"""onnxruntime backend: CPU everywhere, CUDA and TensorRT execution providers where installed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from waferscope.edge.runners.base import F32, EngineOutputs, RunnerUnavailableError
from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES, BundleError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def available_providers() -> list[str]:
    """onnxruntime's execution providers on this machine, best first."""
    return list(ort.get_available_providers())


def choose_providers(preference: Sequence[str]) -> list[str]:
    """The preferred providers that are installed, in order, always ending with CPU."""
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
            self._session = ort.InferenceSession(
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
        self._threads = threads

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
