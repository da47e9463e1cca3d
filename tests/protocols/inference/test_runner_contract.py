"""One contract for every inference backend: the same outputs, shapes and answers.

onnxruntime on CPU runs everywhere; the GPU backends (onnxruntime's CUDA and TensorRT execution
providers, and the edge's native TensorRT runner, which implements protocols' Runner interface)
run where their libraries and a GPU are present and are skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sample_wafers import encoded_maps

from waferscope.protocols.inference import (
    Bundle,
    OnnxRuntimeRunner,
    Runner,
    RunnerUnavailableError,
    available_providers,
    load_bundle,
)


def _ort(provider: str) -> Callable[[Bundle, Path], Runner]:
    def make(bundle: Bundle, cache: Path) -> Runner:
        name = {
            "cpu": "CPUExecutionProvider",
            "cuda": "CUDAExecutionProvider",
            "tensorrt": "TensorrtExecutionProvider",
        }[provider]
        if name not in available_providers():
            pytest.skip(f"onnxruntime here has no {name} (installed: {available_providers()})")
        runner = OnnxRuntimeRunner(
            bundle.engine_path, providers=[provider], threads=1, cache_dir=cache
        )
        if runner.provider != name:
            pytest.skip(f"{name} is installed but could not start (fell back to {runner.provider})")
        return runner

    return make


def _tensorrt(bundle: Bundle, cache: Path) -> Runner:
    for module in ("tensorrt", "cuda"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"native TensorRT runner: the {module!r} Python package is not installed")
    from waferscope.edge.runners.tensorrt_native import TensorRtRunner

    try:
        return TensorRtRunner(
            bundle.engine_path, input_shape=bundle.encoding.shape, max_batch=16, cache_dir=cache
        )
    except RunnerUnavailableError as exc:
        pytest.skip(f"native TensorRT runner unavailable: {exc}")


BACKENDS = {
    "onnxruntime-cpu": _ort("cpu"),
    "onnxruntime-cuda": _ort("cuda"),
    "onnxruntime-tensorrt": _ort("tensorrt"),
    "tensorrt-native": _tensorrt,
}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def runner(request: pytest.FixtureRequest, bundle_dir: Path, tmp_path: Path) -> Iterator[Runner]:
    if request.param != "onnxruntime-cpu":
        request.applymarker(pytest.mark.gpu)
    made = BACKENDS[request.param](load_bundle(bundle_dir), tmp_path)
    yield made
    made.close()


@pytest.fixture(scope="module")
def maps(val_npz: Path) -> tuple[np.ndarray, np.ndarray]:
    return encoded_maps(val_npz, 40, seed=21)


def test_outputs_follow_the_bundle_contract(
    runner: Runner, bundle_dir: Path, maps: tuple[np.ndarray, np.ndarray]
) -> None:
    bundle = load_bundle(bundle_dir)
    x, _ = maps
    for n in (1, 3, 16, 17):
        out = runner.run(x[:n])
        out.check(n, len(bundle.pattern_classes), len(bundle.cause_classes))
        assert out.feature_map.dtype == np.float32
        np.testing.assert_allclose(out.embedding, out.feature_map.mean(axis=(2, 3)), atol=0.05)
    assert isinstance(runner, Runner)  # the protocol is runtime-checkable
    assert runner.backend in ("onnxruntime", "tensorrt")
    assert runner.provider


def test_batching_does_not_change_answers(
    runner: Runner, maps: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = maps
    whole = runner.run(x[:12])
    singles = [runner.run(x[i : i + 1]) for i in range(12)]
    np.testing.assert_allclose(
        whole.pattern_logits, np.concatenate([s.pattern_logits for s in singles]), atol=1e-3
    )


def test_int8_engine_agrees_with_the_fp32_reference(
    runner: Runner, bundle_dir: Path, maps: tuple[np.ndarray, np.ndarray]
) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.reference_path is not None
    x, _ = maps
    fp32 = OnnxRuntimeRunner(bundle.reference_path, threads=1).run(x)
    ours = runner.run(x)
    agree = (fp32.pattern_logits.argmax(1) == ours.pattern_logits.argmax(1)).mean()
    # The tiny test model (3 conv layers, 6 epochs) sits near its decision boundaries: its
    # INT8 top-1 agreement on these 36 maps is 30-33 depending on the CPU's float kernels
    # (0.83 on AMD EPYC hosts). The shipped engine's parity is held to 0.005 macro-F1 in
    # tests/trainer/test_default_bundle.py.
    assert agree >= 0.80
