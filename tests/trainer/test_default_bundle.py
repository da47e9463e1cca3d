"""The default bundle shipped with the edge agent: intact, runnable, and as good as it says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from waferscope.protocols import bundle as contract
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_batch
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.evaluate import evaluate
from waferscope.trainer.tta import has_dihedral_tta, remove_dihedral_tta

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"

pytestmark = pytest.mark.skipif(
    not (DEFAULT / contract.MANIFEST_NAME).is_file(), reason="no default bundle in this checkout"
)


def test_manifest_and_files() -> None:
    manifest = contract.verify(DEFAULT)
    assert contract.encoding_of(manifest).size == 64
    assert list(manifest.pattern_classes) == [
        "Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch",
        "none",
    ]  # fmt: skip
    assert manifest.taxonomy_ref and manifest.training_data_digest
    assert {"pattern_macro_f1", "fp32_macro_f1", "int8_fp32_agreement"} <= set(manifest.metrics)
    total = sum(f.size_bytes for f in manifest.files)
    assert total < 8_000_000  # "a few MB"
    assert (DEFAULT / "MODEL_CARD.md").read_text().count("waferscope train --config") >= 1


def test_engine_outputs_and_head_agree(data_dir: Path, tmp_path: Path) -> None:
    manifest = contract.read_manifest(DEFAULT)
    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    x = encode_batch(arrays.maps[::50], contract.encoding_of(manifest))
    engine = OnnxEngine(DEFAULT / "model.int8.onnx")
    p, c, fmap, emb = engine.run(x)
    assert fmap.shape[2:] == (8, 8) and emb.shape[1] == fmap.shape[1]
    # head.npz reproduces the single-view logits from the embedding; an engine with test-time
    # augmentation averages 8 views, so compare the head with the single view inside it.
    model = onnx.load(str(DEFAULT / "model.int8.onnx"))
    described = json.loads((DEFAULT / "model.json").read_text()).get("test_time_augmentation")
    tta = (described or {"mode": "none"})["mode"]
    assert has_dihedral_tta(model) == (tta == "d4")
    if tta == "d4":
        single = tmp_path / "single.onnx"
        onnx.save(remove_dihedral_tta(model), str(single))
        p, c, _, single_emb = OnnxEngine(single).run(x)
        np.testing.assert_array_equal(single_emb, emb)  # the original view's embedding
    head = contract.HeadWeights.load(DEFAULT / "head.npz")
    hp, hc = head.logits(emb)
    assert (hp.argmax(1) == p.argmax(1)).mean() > 0.95
    assert (hc.argmax(1) == c.argmax(1)).mean() > 0.95


@pytest.mark.slow
@pytest.mark.timeout(900)  # 8 engine views over 12,450 maps on a shared CPU
def test_reproduces_its_recorded_validation_metrics(data_dir: Path) -> None:
    manifest = contract.read_manifest(DEFAULT)
    result = evaluate(DEFAULT, [data_dir / "wm811k" / "val.npz"])
    recorded = manifest.metrics["pattern_macro_f1"]
    assert result.metrics.macro_f1 == pytest.approx(recorded, abs=0.01)
    assert np.isclose(result.metrics.n, manifest.metrics["val_maps"])
