"""Export, INT8 quantisation, parity, bundle and evaluate on real onnxruntime sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols import bundle as contract
from waferscope.protocols.cli.main import main
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_batch
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole
from waferscope.trainer.calibration import apply_temperature
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.evaluate import evaluate
from waferscope.trainer.export import load_checkpoint, torch_outputs
from waferscope.trainer.tensorrt_build import is_qdq_model

pytestmark = pytest.mark.slow


def test_bundle_follows_the_contract(tiny_bundle: Path) -> None:
    manifest = contract.verify(tiny_bundle)
    assert manifest.model_version == "tiny-test"
    assert contract.encoding_of(manifest).size == 64
    assert list(manifest.pattern_classes)[-1] == "none"
    assert len(manifest.root_cause_classes) == 7
    assert manifest.taxonomy_ref == "wm811k-root-causes@1"
    assert len(manifest.training_data_digest) == 64
    assert manifest.created_time.seconds > 0
    for key in ("pattern_macro_f1", "fp32_macro_f1", "int8_fp32_agreement", "pattern_ece"):
        assert key in manifest.metrics
    roles = {f.path: f.role for f in manifest.files}
    assert roles["model.int8.onnx"] == BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX
    assert roles["model.fp32.onnx"] == BundleFileRole.BUNDLE_FILE_ROLE_REFERENCE_ONNX
    assert roles["head.npz"] == BundleFileRole.BUNDLE_FILE_ROLE_HEAD_WEIGHTS
    assert {"MODEL_CARD.md", "confusion_matrix.png", "metrics.json", "taxonomy.toml"} <= set(roles)
    card = (tiny_bundle / "MODEL_CARD.md").read_text()
    assert "root-cause head is a prior" in card and "| Scratch |" in card
    head = contract.HeadWeights.load(tiny_bundle / "head.npz")
    assert head.pattern.weight.shape[0] == 9


def test_engines_io_and_parity(tiny_bundle: Path, trained_run: Path, data_dir: Path) -> None:
    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    x = encode_batch(arrays.maps[:5], contract.encoding_of(contract.read_manifest(tiny_bundle)))
    fp32 = OnnxEngine(tiny_bundle / "model.fp32.onnx")
    int8 = OnnxEngine(tiny_bundle / "model.int8.onnx")
    assert is_qdq_model(tiny_bundle / "model.int8.onnx")
    assert not is_qdq_model(tiny_bundle / "model.fp32.onnx")
    lm = load_checkpoint(trained_run)
    temperature = json.loads((tiny_bundle / "model.json").read_text())["pattern_temperature"]
    assert 0.2 <= temperature <= 5.0
    apply_temperature(lm.model, temperature)  # the bundle's head has it folded in
    want = torch_outputs(lm.model, x)
    for batch in (1, 5):  # dynamic batch
        got = fp32.run(x[:batch])
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b[:batch], rtol=1e-3, atol=1e-4)
    p, c, fmap, emb = int8.run(x)
    assert p.shape == (5, 9) and c.shape == (5, 7) and fmap.shape[2:] == (8, 8)
    np.testing.assert_allclose(emb, fmap.mean(axis=(2, 3)), atol=0.05 * float(np.abs(emb).max()))
    doc = json.loads((tiny_bundle / "metrics.json").read_text())
    assert 0.0 <= doc["parity"]["int8_fp32_agreement"] <= 1.0
    assert doc["int8"]["n"] == doc["fp32"]["n"] > 0


def test_evaluate_bundle_and_checkpoint(
    tiny_bundle: Path, trained_run: Path, tmp_path: Path, small_val: Path
) -> None:
    small = small_val
    idx = np.arange(0, 12450, 125)
    result = evaluate(tiny_bundle, [small])
    assert result.metrics.n == len(idx) and result.engine == "model.int8.onnx"
    assert evaluate(tiny_bundle, [small], engine="fp32").engine == "model.fp32.onnx"
    assert evaluate(trained_run, [small]).metrics.n == len(idx)
    png = tmp_path / "cm.png"
    rc = main(
        ["evaluate", "--model", str(tiny_bundle), "--data", str(small), "--confusion-png", str(png)]
    )
    assert rc == 0 and png.read_bytes().startswith(b"\x89PNG")


def test_altered_bundle_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "head.npz").write_bytes(b"tampered")
    with pytest.raises(contract.BundleError):
        evaluate(copy, [tmp_path / "x.npz"])
