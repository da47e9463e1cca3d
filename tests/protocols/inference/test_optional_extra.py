"""onnxruntime is an optional extra: protocols imports without it and names the missing extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from waferscope.protocols.inference import (
    InferenceExtraMissingError,
    OnnxRuntimeRunner,
    RunnerUnavailableError,
    available_providers,
    load_model,
)


def test_importing_protocols_and_its_inference_core_does_not_import_onnxruntime() -> None:
    code = (
        "import sys\n"
        "import waferscope.protocols, waferscope.protocols.inference\n"
        "import waferscope.protocols.inference.onnx_runtime, waferscope.protocols.formats\n"
        "import waferscope.protocols.bundle, waferscope.protocols.messages\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_without_the_extra_the_error_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(InferenceExtraMissingError, match=r"waferscope-protocols\[inference\]"):
        OnnxRuntimeRunner(tmp_path / "model.int8.onnx")
    with pytest.raises(RunnerUnavailableError, match="'inference' extra"):
        available_providers()


def test_without_the_extra_load_model_fails_after_verifying_the_bundle(
    monkeypatch: pytest.MonkeyPatch, bundle_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(InferenceExtraMissingError):
        load_model(bundle_dir)
