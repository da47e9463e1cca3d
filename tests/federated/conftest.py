"""Fixtures for the federated tests: skewed node partitions of WM-811K train, a small server
config (tiny model, gate set = a per-class slice of WM-811K val), a warm-start checkpoint (the
tiny model pre-trained on a balanced slice of WM-811K train, standing in for the shipped engine)
and the local-only baseline every node reaches from it on its own maps."""

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
NODES, MAJOR, MINOR = 3, 30, 0
# Fine-tuning from the warm start: a few short rounds (little client drift) at a small step size.
ROUNDS, LOCAL_STEPS, LR = 3, 10, 0.003
WARM_MAPS_PER_CLASS, WARM_STEPS = 40, 400


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
        "optim": {"lr": LR},
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


@pytest.fixture(scope="session")
def warm_start(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The tiny model trained on 40 maps of every class (a stand-in for the shipped engine)."""
    import torch

    from waferscope.trainer.config import load_config
    from waferscope.trainer.federated.node_training import NodeDataset, NodeTrainer

    out = tmp_path_factory.mktemp("warm")
    slice_ = skewed_partitions(
        data_dir / "wm811k" / "train.npz", out, 1, major=WARM_MAPS_PER_CLASS, minor=0, seed=1
    )[0]
    cfg = load_config(server_config(out, data_dir, "warm"))
    trainer = NodeTrainer(cfg, NodeDataset((slice_,)))
    trainer.train(WARM_STEPS, seed=1)
    path = out / "warm.pt"
    torch.save({"model": trainer.weights()}, path)
    return path


def local_only_scores(cfg_path: Path, warm: Path, parts: list[Path]) -> list[float]:
    """Each node alone: ROUNDS x LOCAL_STEPS steps from the warm start on its own maps, scored
    on the gate set like the federated rounds (same model, recipe and per-node budget)."""
    import torch

    from waferscope.trainer.config import load_config
    from waferscope.trainer.federated.node_training import NodeDataset, NodeTrainer
    from waferscope.trainer.runtime import resolve_runtime
    from waferscope.trainer.train import evaluate_torch, prepare_data

    cfg = load_config(cfg_path)
    gate = prepare_data(cfg)
    rt = resolve_runtime(cfg.run)
    weights = torch.load(warm, map_location="cpu")["model"]
    scores = []
    for part in parts:
        node = NodeTrainer(cfg, NodeDataset((part,)))
        node.load(weights)
        for rnd in range(1, ROUNDS + 1):
            node.train(LOCAL_STEPS, seed=rnd * 1009)
        metrics, _ = evaluate_torch(node.model, gate.val, gate.spec, rt, 256)
        scores.append(float(metrics.macro_f1))
    return scores
