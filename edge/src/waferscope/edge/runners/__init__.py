"""Inference backends behind protocols' :class:`~waferscope.protocols.inference.Runner`
interface, chosen by configuration: protocols' onnxruntime runner, or the native TensorRT
runner that lives here."""

from __future__ import annotations

from pathlib import Path

from waferscope.edge.config import ModelConfig
from waferscope.protocols.inference import Bundle, Runner


def create_runner(bundle: Bundle, model: ModelConfig, cache_dir: Path | None = None) -> Runner:
    """The configured backend over the bundle's engine.

    RunnerUnavailableError names what is missing on this machine.
    """
    if model.runner == "tensorrt":
        from waferscope.edge.runners.tensorrt_native import TensorRtRunner

        return TensorRtRunner(
            bundle.engine_path,
            input_shape=bundle.encoding.shape,
            max_batch=model.max_batch,
            prebuilt=bundle.tensorrt_engines,
            cache_dir=cache_dir,
        )
    from waferscope.protocols.inference import OnnxRuntimeRunner

    return OnnxRuntimeRunner(
        bundle.engine_path, providers=model.providers, threads=model.threads, cache_dir=cache_dir
    )
