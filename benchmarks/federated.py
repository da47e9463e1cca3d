"""Federated retraining on loopback: rounds to a target gate-set macro-F1, bytes and wall time per
round, and federated vs local-only vs central training on the same budget (docs/federated.md).

Real processes: a SuperLink with TLS and node authentication and three SuperNodes on skewed
partitions of WM-811K train (30 maps of each of 3 classes per node, none of the other 6), the
waferscope Flower app run with ``flwr run``, every contender starting from the same warm start
(the tiny model pre-trained on 40 maps of every class of WM-811K train, standing in for the
shipped engine; ``--cold`` starts from random weights instead). Then, in-process with the same
model, optimiser and steps: each node alone (ROUNDS x LOCAL_STEPS steps on its own maps) and
central training on the union of the three partitions (3 x ROUNDS x LOCAL_STEPS steps). Every
contender is scored on the same gate set after each round's worth of steps.

    .venv/bin/python benchmarks/federated.py [--rounds 4] [--local-steps 10]

Writes benchmarks/.work/federated/result.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import tomli_w
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "federated"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from flower_processes import Federation  # noqa: E402
from tiny_trainer_model import TINY_MODEL  # noqa: E402

from waferscope.trainer.config import load_config  # noqa: E402
from waferscope.trainer.federated.node_training import NodeDataset, NodeTrainer  # noqa: E402
from waferscope.trainer.federated.partition import skewed_partitions  # noqa: E402
from waferscope.trainer.runtime import resolve_runtime  # noqa: E402
from waferscope.trainer.train import evaluate_torch, prepare_data  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "wm811k"
WORK = ROOT / "benchmarks" / ".work" / "federated"


def write_config(path: Path, data: Path) -> Path:
    val = str(data / "val.npz")
    doc = {
        "name": "bench",
        "seed": 7,
        "data": {
            "train": [val],
            "val": [val],
            "limit_per_class": 4,
            "val_limit_per_class": 50,
            "encoding_size": 32,
            "batch_size": 32,
            "eval_batch_size": 256,
            "num_workers": 0,
        },
        "model": dict(TINY_MODEL),
        "optim": {"lr": 0.003},
        "run": {"output_dir": str(path.parent / "runs"), "threads": 1, "precision": "fp32"},
        "tracking": {"enabled": False},
        "export": {"calibration_samples": 16},
    }
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def warm_start(cfg_path: Path) -> Path:
    """The tiny model after 400 steps on 40 maps of every class (a stand-in shipped engine)."""
    cfg = load_config(cfg_path)
    part = skewed_partitions(DATA / "train.npz", WORK / "warm", 1, major=40, minor=0, seed=1)[0]
    node = NodeTrainer(cfg, NodeDataset((part,)))
    node.train(400, seed=1)
    path = WORK / "warm.pt"
    torch.save({"model": node.weights()}, path)
    return path


def in_process(
    cfg_path: Path, files: list[Path], rounds: int, steps: int, warm: Path | None
) -> list[float]:
    """Gate macro-F1 after each round's worth of steps, training on ``files`` alone."""
    cfg = load_config(cfg_path)
    prep = prepare_data(cfg)
    rt = resolve_runtime(cfg.run)
    node = NodeTrainer(cfg, NodeDataset(tuple(files)))
    if warm is not None:
        node.load(torch.load(warm, map_location="cpu")["model"])
    scores = []
    for rnd in range(1, rounds + 1):
        if steps:
            node.train(steps, seed=rnd * 1009)
        metrics, _ = evaluate_torch(node.model, prep.val, prep.spec, rt, 256)
        scores.append(round(metrics.macro_f1, 4))
    return scores


def federated(
    cfg_path: Path, parts: list[Path], rounds: int, steps: int, warm: Path | None
) -> list[dict]:
    fed = Federation(WORK / "federation")
    try:
        fed.start_link()
        for i, part in enumerate(parts):
            fed.start_node(fed.add_node(f"node-{i}", part, register=True))
        run = fed.run(
            {
                "train-config": str(cfg_path),
                "num-rounds": rounds,
                "local-steps": steps,
                "min-train-nodes": 3,
                "min-available-nodes": 3,
                "fraction-evaluate": 0.0,
                "bundle": False,
                "initial-weights": str(warm or ""),
            }
        )
        if run.wait(3600) != 0:
            raise SystemExit((fed.root / "flwr-run.log").read_text()[-3000:])
    finally:
        fed.stop()
    history = WORK / "runs" / "bench" / "history.jsonl"
    return [json.loads(line) for line in history.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.30)
    parser.add_argument("--cold", action="store_true", help="random initial weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if WORK.exists():
        import shutil

        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    parts = skewed_partitions(DATA / "train.npz", WORK / "parts", 3, major=30, minor=0)
    cfg_path = write_config(WORK / "bench.toml", DATA)
    warm = None if args.cold else warm_start(cfg_path)
    warm_score = in_process(cfg_path, parts[:1], 1, 0, warm)[0] if warm else None
    started = time.monotonic()
    rows = federated(cfg_path, parts, args.rounds, args.local_steps, warm)
    fed_wall = time.monotonic() - started
    fed_scores = [round(r["gate"]["gate-macro-f1"], 4) for r in rows]
    local = [in_process(cfg_path, [p], args.rounds, args.local_steps, warm) for p in parts]
    central = in_process(cfg_path, parts, args.rounds, 3 * args.local_steps, warm)
    reached = next((i + 1 for i, s in enumerate(fed_scores) if s >= args.target), None)
    result = {
        "rounds": args.rounds,
        "local_steps": args.local_steps,
        "target": args.target,
        "warm_start_score": warm_score,
        "rounds_to_target": reached,
        "federated_per_round": fed_scores,
        "round_seconds": [round(r["seconds"], 1) for r in rows],
        "bytes_down_per_round": rows[0]["bytes_down"],
        "bytes_up_per_round": rows[0]["bytes_up"],
        "federated_wall_seconds": round(fed_wall, 1),
        "local_only_per_round": local,
        "central_per_round": central,
        "final": {
            "federated": fed_scores[-1],
            "local_only": [s[-1] for s in local],
            "central": central[-1],
        },
    }
    (WORK / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
