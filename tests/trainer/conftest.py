"""Fixtures for the trainer tests: tiny configs over a few hundred real maps, a tiny trained run
and its bundle (built once per session and shared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from tiny_trainer_model import TINY_MODEL  # noqa: E402 (tests/support, kept importable here)

from waferscope.trainer.config import TrainConfig  # noqa: E402

torch.set_num_threads(1)


def tiny_config(root: Path, data_dir: Path, name: str = "tiny", **sections: Any) -> TrainConfig:
    doc: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "data": {
            "train": [str(data_dir / "wm811k" / "train.npz")],
            "val": [str(data_dir / "wm811k" / "val.npz")],
            "limit_per_class": 12,
            "val_limit_per_class": 6,
            "batch_size": 16,
            "eval_batch_size": 64,
            "num_workers": 0,
            "epoch_samples": 32,
        },
        "model": dict(TINY_MODEL),
        "optim": {"epochs": 2, "warmup_epochs": 0.5},
        "run": {"output_dir": str(root / "runs"), "threads": 1, "precision": "fp32"},
        "tracking": {"uri": (root / "mlruns").resolve().as_uri()},
        "export": {"calibration_samples": 32},
    }
    for key, value in sections.items():
        doc.setdefault(key, {}).update(value)
    return TrainConfig.from_dict(doc)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A tiny two-epoch run; returns its best.pt."""
    from waferscope.trainer.train import train

    root = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(root, data_dir)
    result = train(cfg, resume=False, show_progress=False)
    return result.run_dir / "best.pt"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> Path:
    from waferscope.trainer.bundler import build_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny-bundle"
    build_bundle(trained_run, out, include_fp32=True, model_version="tiny-test")
    return out


@pytest.fixture(scope="session")
def small_val(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Every 125th map of the WM-811K validation split (100 maps) as a dataset archive."""
    import numpy as np

    from waferscope.protocols.datasets import load_labelled_arrays

    small = tmp_path_factory.mktemp("small-val") / "small.npz"
    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    idx = np.arange(0, 12450, 125)
    maps = [arrays.maps[i] for i in idx]
    shapes = np.array([m.shape for m in maps], np.int32)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])]).astype(np.int64)
    np.savez(
        small,
        maps=np.concatenate([m.ravel() for m in maps]),
        shapes=shapes,
        offsets=offsets,
        label=arrays.targets[idx].astype(np.int8),
        class_names=np.array(arrays.class_names),
    )
    return small
