"""Train the wider backbones on one GPU within a wall-clock budget, then bundle them (issue 16).

Run through ``benchmarks/gpu_train.sh`` (which sets up the device machine); on its own:

    python benchmarks/gpu_train.py --data DIR --out DIR [--minutes 9] [--models resnet18 ...]
    python benchmarks/gpu_train.py --data DIR --out DIR --tiny --device cpu   # the CPU rehearsal

For each backbone it trains the shipped recipe (``trainer/configs/wm811k-long.toml``: same loss,
augmentation, optimiser and seed) from scratch with bf16 autocast and channels-last, its
schedule fitted to a share of the budget (``run.budget_minutes``), selects the best epoch on
val, measures val macro-F1 in torch on the full split (one view and the 8 dihedral views), then
builds an INT8 bundle with the 8-view engine through the trainer's own bundler, whose parity
report runs on a stratified val sample (the full INT8 evaluation is a CPU job afterwards:
``benchmarks/tta_engine.py`` or ``waferscope evaluate``). Output, at most 8 files:
``<model>.bundle.tar`` per backbone, ``metrics.json`` and ``train.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import shutil
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from waferscope.protocols import bundle as contract
from waferscope.trainer.bundler import BundleResult, build_bundle
from waferscope.trainer.config import load_config
from waferscope.trainer.data import LabelledData, limit_per_class, load_labelled, write_archive
from waferscope.trainer.export import load_checkpoint
from waferscope.trainer.metrics import compute_metrics
from waferscope.trainer.runtime import resolve_runtime
from waferscope.trainer.train import train

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "trainer" / "configs" / "wm811k-long.toml"
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_FILES = 8

# Full-width backbones of benchmarks/trainer_backbones.md; share = part of the training budget.
MODELS: dict[str, dict[str, Any]] = {
    "resnet18": {"share": 0.25, "model": {"backbone": "resnet18", "hidden": [128]}},
    "efficientnet_b0": {"share": 0.30, "model": {"backbone": "efficientnet_b0", "hidden": [128]}},
    "efficientnet_b3": {"share": 0.45, "model": {"backbone": "efficientnet_b3", "hidden": [128]}},
}
# The CPU rehearsal: same backbones and code path, a handful of steps on a few hundred maps.
TINY = {
    "data.limit_per_class": 24,
    "data.val_limit_per_class": 12,
    "data.batch_size": 16,
    "data.eval_batch_size": 64,
    "data.epoch_samples": 32,
    "data.num_workers": 0,
    "optim.epochs": 2,
    "export.calibration_samples": 16,
}

log = logging.getLogger("gpu_train")


def _overrides(name: str, args: argparse.Namespace, minutes: float) -> list[str]:
    sets: dict[str, Any] = {
        "name": f"gpu-{name}",
        "data.train": [str(args.data / "wm811k" / "train.npz")],
        "data.val": [str(args.data / "wm811k" / "val.npz")],
        "model.backbone_kwargs": {},
        "run.output_dir": str(args.work / "runs"),
        "run.device": args.device,
        "run.threads": None,
        "run.deterministic": False,
        "run.channels_last": True,
        "run.budget_minutes": minutes,
        "run.max_minutes": minutes * 1.15,
        "run.early_stopping_patience": 1000,
        "tracking.enabled": False,
        "export.tta": "d4",
    }
    if args.device != "cpu":
        sets.update(
            {
                "run.precision": "bf16",
                "data.batch_size": args.batch_size,
                "data.eval_batch_size": 2048,
                "data.num_workers": args.workers,
                "optim.epochs": 400,
                "optim.lr": 0.002 * (args.batch_size / 128) ** 0.5,
            }
        )
    for key, value in MODELS[name]["model"].items():
        sets[f"model.{key}"] = value
    if args.tiny:
        sets.update(TINY)
        if name == "resnet18":  # a slim width keeps the CPU test short; same code path
            sets["model.backbone_kwargs"] = {"channels": [8, 16, 16, 16]}
    return [f"{key}={json.dumps(value)}" for key, value in sets.items()]


def dihedral_logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pattern logits averaged over the 8 quarter-turn and mirror views (as the d4 engine does)."""
    views = [x, x.flip(2), x.flip(3), x.flip(2, 3)]
    views += [v.transpose(2, 3) for v in views]
    return torch.stack([net(v)[0].float() for v in views]).mean(0)


@torch.no_grad()
def torch_val_metrics(checkpoint: Path, val: LabelledData, device: str) -> dict[str, Any]:
    """Full-split val metrics of the FP32 torch model: one view and the 8 dihedral views."""
    from waferscope.protocols.encoding import encode_batch

    lm = load_checkpoint(checkpoint)
    rt = resolve_runtime(lm.config.run.model_copy(update={"device": device, "threads": None}))
    net = lm.model.to(rt.device).eval()
    single, d4 = [], []
    for start in range(0, len(val), 1024):
        x = torch.from_numpy(encode_batch(val.grids[start : start + 1024], lm.spec)).to(rt.device)
        with rt.autocast():
            single.append(torch.softmax(net(x)[0].float(), 1).cpu().numpy())
            d4.append(torch.softmax(dihedral_logits(net, x), 1).cpu().numpy())
    out = {}
    for key, probs in (("single_view", single), ("d4", d4)):
        metrics = compute_metrics(val.targets, np.concatenate(probs), val.class_names, False)
        out[key] = metrics.to_dict()
    return out


def write_val_sample(val: LabelledData, per_class: int, seed: int, path: Path) -> Path:
    """A stratified val sample in the dataset npz layout, for the bundle's parity report."""
    sample = val.subset(limit_per_class(val.keys(), per_class, seed))
    write_archive(path, sample.grids, sample.targets, sample.class_names)
    return path


def pack_bundle(result: BundleResult, seconds: float) -> dict[str, Any]:
    """Verify one built bundle and pack its folder as one tar beside it."""
    target = result.folder
    contract.verify(target)
    tar = target.with_suffix(".bundle.tar")
    with tarfile.open(tar, "w") as fh:
        fh.add(target, arcname=target.name)
    shutil.rmtree(target)
    report = {"n": result.parity.n, **result.parity.scalars()} if result.parity else None
    return {
        "tar": tar.name,
        "bytes": tar.stat().st_size,
        "seconds": seconds,
        "parity_on_val_sample": report,
    }


def check_output(out: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    if len(files) > MAX_FILES:
        raise SystemExit(f"gpu_train: {len(files)} files in {out}, at most {MAX_FILES} come back")
    for f in files:
        if f.stat().st_size > MAX_FILE_BYTES:
            raise SystemExit(f"gpu_train: {f.name} is {f.stat().st_size} bytes (over 16 MiB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder holding wm811k/*.npz")
    ap.add_argument("--out", type=Path, required=True, help="the output folder ($OUT)")
    ap.add_argument("--work", type=Path, default=None, help="checkpoints (default /tmp/...)")
    ap.add_argument("--minutes", type=float, default=9.0, help="whole wall-clock budget")
    ap.add_argument("--bundle-minutes", type=float, default=2.0, help="kept for bundling")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--parity-per-class", type=int, default=120)
    ap.add_argument("--tiny", action="store_true", help="the CPU rehearsal (a few steps)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or Path(f"/tmp/gpu-train-{os.getpid()}")
    args.work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    file_log = logging.FileHandler(args.out / "train.log")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(file_log)
    root.setLevel(logging.INFO)
    try:
        return _run(args, started)
    finally:
        root.removeHandler(file_log)
        file_log.close()


def _run(args: argparse.Namespace, started: float) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        log.error("no CUDA device visible to torch %s: stopping before any work", torch.__version__)
        return 2
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "cpus": os.cpu_count(),
    }
    log.info("environment %s", env)
    train_minutes = max(0.2, args.minutes - args.bundle_minutes - 0.5)
    shares = {m: MODELS[m]["share"] for m in args.models}
    total_share = sum(shares.values())
    doc: dict[str, Any] = {
        "environment": env,
        "recipe": str(RECIPE.relative_to(ROOT)),
        "budget_minutes": args.minutes,
        "models": {},
    }
    checkpoints: dict[str, Path] = {}
    val: LabelledData | None = None
    for name in args.models:
        minutes = train_minutes * shares[name] / total_share
        cfg = load_config(RECIPE, _overrides(name, args, minutes))
        t0 = time.monotonic()
        result = train(cfg, resume=False, show_progress=False)
        seconds = time.monotonic() - t0
        if val is None:
            val = load_labelled(cfg.data.val)
            if cfg.data.val_limit_per_class:
                val = val.subset(
                    limit_per_class(val.keys(), cfg.data.val_limit_per_class, cfg.seed + 1)
                )
        best = result.run_dir / "best.pt"
        checkpoints[name] = best
        doc["models"][name] = {
            "config": cfg.to_dict(),
            "train_seconds": seconds,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_val_macro_f1_during_training": result.best_score,
            "epoch_samples": cfg.data.epoch_samples,
            "torch_val": torch_val_metrics(best, val, args.device),
        }
        log.info(
            "%s: %d epochs in %.0f s, best epoch %d, val macro-F1 %.4f",
            name,
            result.epochs_run,
            seconds,
            result.best_epoch,
            result.best_score,
        )
        (args.out / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    assert val is not None
    sample = write_val_sample(val, args.parity_per_class, 20240601, args.work / "val_sample.npz")
    threads = max(1, (os.cpu_count() or 2) // max(1, len(checkpoints)))
    # spawn, not fork: a child forked after torch's OpenMP threads ran can hang.
    context = multiprocessing.get_context("spawn")
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=len(checkpoints), mp_context=context) as pool:
        jobs = {
            name: pool.submit(
                build_bundle, ckpt, args.out / name, val=[sample], threads=threads, tta="d4",
                model_version=f"{name}-gpu", command="benchmarks/gpu_train.py",
            )
            for name, ckpt in checkpoints.items()
        }  # fmt: skip
        for name, job in jobs.items():
            doc["models"][name]["bundle"] = pack_bundle(job.result(), time.monotonic() - t0)
    doc["wall_seconds"] = time.monotonic() - started
    (args.out / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    check_output(args.out)
    log.info("done in %.0f s; %s", doc["wall_seconds"], sorted(p.name for p in args.out.iterdir()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
