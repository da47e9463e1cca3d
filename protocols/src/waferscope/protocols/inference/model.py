"""A loaded model: a verified bundle with a warmed-up runner over its engine.

:func:`start_model` warms any runner up (and so checks the engine's I/O against the manifest);
:func:`load_model` is the short way for onnxruntime: bundle folder in, model out. Choosing a
backend from a service's configuration and swapping models while a service runs belong to the
service (the edge's ``engine`` module).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from waferscope.protocols.bundle import BundleError
from waferscope.protocols.inference.bundles import Bundle, load_bundle
from waferscope.protocols.inference.runner import EngineOutputs, Runner


@dataclass(frozen=True, slots=True)
class Model:
    bundle: Bundle
    runner: Runner
    loaded_at: float

    @property
    def version(self) -> str:
        return self.bundle.model_version

    def infer(self, batch: npt.NDArray[np.floating]) -> EngineOutputs:
        """Run the engine on (N, C, S, S) and check the outputs against the bundle contract."""
        outputs = self.runner.run(batch.astype(np.float32, copy=False))
        outputs.check(
            batch.shape[0], len(self.bundle.pattern_classes), len(self.bundle.cause_classes)
        )
        return outputs


def start_model(
    bundle: Bundle, runner: Runner, *, warmup_runs: int = 1, max_batch: int = 8
) -> Model:
    """Warm ``runner`` up on zero inputs (one wafer, then up to 8) and return the model.

    Raises BundleError when the engine breaks the contract or fails on the bundle's input shape
    (the runner is closed then).
    """
    model = Model(bundle=bundle, runner=runner, loaded_at=time.time())
    shape = bundle.encoding.shape
    for i in range(max(1, warmup_runs)):
        n = 1 if i == 0 else min(max_batch, 8)
        try:  # also checks the I/O contract against the manifest
            model.infer(np.zeros((n, *shape), dtype=np.float32))
        except BundleError:
            runner.close()
            raise
        except Exception as exc:  # the backend's own error types
            runner.close()
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BundleError(
                f"bundle {bundle.model_version}: the engine fails on a {n}x{shape} input: {first}"
            ) from None
    return model


def load_model(
    folder: Path,
    *,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
    warmup_runs: int = 1,
    max_batch: int = 8,
    cache_dir: Path | None = None,
) -> Model:
    """Verify a bundle folder and start it on onnxruntime (the ``inference`` extra).

    ``providers``: onnxruntime execution providers by short name ('tensorrt', 'cuda', 'cpu') in
    order of preference; CPU is always the last resort. Raises BundleError (refused bundle) or
    InferenceExtraMissingError (onnxruntime not installed).
    """
    from waferscope.protocols.inference.onnx_runtime import OnnxRuntimeRunner

    bundle = load_bundle(folder)
    runner = OnnxRuntimeRunner(
        bundle.engine_path, providers=providers, threads=threads, cache_dir=cache_dir
    )
    return start_model(bundle, runner, warmup_runs=warmup_runs, max_batch=max_batch)
