"""Fixtures for the federated tests: skewed node partitions of WM-811K train and a small server
config (tiny model, gate set = a per-class slice of WM-811K val)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("flwr")

import tomli_w
from tiny_trainer_model import TINY_MODEL

from waferscope.trainer.federated.partition import skewed_partitions

# Three nodes; each holds MAJOR maps of its own three classes and MINOR (none) of the other six:
# a strong label skew, as between fabs whose processes fail in different ways.
NODES, MAJOR, MINOR = 3, 60, 0


def server_config(root: Path, data_dir: Path, name: str = "federated") -> Path:
    """The server's trainer config: data.val is the gate set, data.train the calibration maps."""
    val = str(data_dir / "wm811k" / "val.npz")
    doc: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "data": {
            "train": [val],
            "val": [val],
            "limit_per_class": 4,
            "val_limit_per_class": 20,
            "encoding_size": 32,
            "batch_size": 32,
            "eval_batch_size": 128,
            "num_workers": 0,
        },
        "model": dict(TINY_MODEL),
        "optim": {"lr": 0.005},
        "run": {"output_dir": str(root / "runs"), "threads": 1, "precision": "fp32"},
        "tracking": {"enabled": False},
        "export": {"calibration_samples": 16},
    }
    path = root / f"{name}.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def partitions(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[Path]:
    out = tmp_path_factory.mktemp("partitions")
    return skewed_partitions(
        data_dir / "wm811k" / "train.npz", out, NODES, major=MAJOR, minor=MINOR, seed=0
    )
