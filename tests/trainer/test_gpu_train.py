"""The GPU training script's CPU rehearsal: same code path, tiny setting, the output contract."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols import bundle as contract
from waferscope.protocols.encoding import EncodingSpec
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.train import budget_epochs

ROOT = Path(__file__).resolve().parents[2]


def _driver():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "benchmarks" / "gpu_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_budget_epochs_fits_the_wall_time() -> None:
    assert budget_epochs(9.0, 6.0, 400) == 90
    assert budget_epochs(9.0, 6.0, 50) == 50  # optim.epochs stays the cap
    assert budget_epochs(0.01, 600.0, 50) == 1  # at least the epoch already run


@pytest.mark.slow
def test_rehearsal_writes_the_output_contract(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    code = _driver().main(
        [
            "--data", str(data_dir), "--out", str(out), "--work", str(tmp_path / "work"),
            "--tiny", "--device", "cpu", "--models", "resnet18",
            "--minutes", "0.6", "--bundle-minutes", "0.2", "--parity-per-class", "4",
        ]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["metrics.json", "resnet18.bundle.tar", "train.log"]
    assert all(p.stat().st_size <= 16 * 1024 * 1024 for p in out.iterdir())
    doc = json.loads((out / "metrics.json").read_text())
    row = doc["models"]["resnet18"]
    assert row["config"]["run"]["channels_last"] is True
    assert row["config"]["run"]["budget_minutes"] > 0
    for view in ("single_view", "d4"):
        assert 0.0 <= row["torch_val"][view]["macro_f1"] <= 1.0
        assert len(row["torch_val"][view]["per_class"]) == 9
    assert row["bundle"]["parity_on_val_sample"]["n"] == 36
    with tarfile.open(out / "resnet18.bundle.tar") as fh:
        fh.extractall(tmp_path / "unpacked", filter="data")
    folder = tmp_path / "unpacked" / "resnet18"
    manifest = contract.verify(folder)
    engine = contract.file_for_role(manifest, contract.BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX)
    model_json = json.loads((folder / "model.json").read_text())
    assert model_json["test_time_augmentation"]["mode"] == "d4"
    grid = np.ones((20, 20), np.uint8)
    grid[5:9, 5:9] = 2
    logits = OnnxEngine(folder / engine, threads=1).pattern_logits([grid], EncodingSpec(size=64))
    assert logits.shape == (1, 9) and np.isfinite(logits).all()


def test_cuda_run_fails_fast_without_a_gpu(tmp_path: Path, data_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code = _driver().main(
        ["--data", str(data_dir), "--out", str(tmp_path / "o"), "--device", "cuda"]
    )
    assert code == 2
    assert "no CUDA device" in (tmp_path / "o" / "train.log").read_text()
