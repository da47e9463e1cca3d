"""The training loop: class-balanced epochs, validation, early stopping, resumable checkpoints,
MLflow tracking.

A run lives in ``<run.output_dir>/<name>/``: ``config.json`` (the resolved config), ``last.pt``
(everything needed to resume, written atomically after every epoch), ``best.pt`` (the weights
with the best validation score), ``history.jsonl`` (one line per epoch) and ``summary.json``.
Running the same config again resumes from ``last.pt`` unless ``resume=False``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # type: ignore[import-untyped]

from waferscope.protocols.encoding import EncodingSpec
from waferscope.protocols.errors import WaferscopeError
from waferscope.trainer import __version__
from waferscope.trainer.config import TrainConfig
from waferscope.trainer.data import (
    EpochSampler,
    LabelledData,
    WaferDataset,
    class_keys,
    limit_per_class,
    load_labelled,
    sampling_weights,
    stratified_split,
)
from waferscope.trainer.losses import MultiTaskLoss
from waferscope.trainer.metrics import Metrics, compute_metrics
from waferscope.trainer.model import WaferNet
from waferscope.trainer.runtime import (
    Runtime,
    predict,
    resolve_runtime,
    seed_everything,
    unwrap,
    wrap_parallel,
)
from waferscope.trainer.synth.budget import add_synthetic
from waferscope.trainer.synth.mixing import mix_batch, mixing_enabled
from waferscope.trainer.taxonomy import Taxonomy, load_taxonomy
from waferscope.trainer.tracking import Tracker

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass
class Prepared:
    train: LabelledData
    val: LabelledData
    taxonomy: Taxonomy
    prior: npt.NDArray[np.float32]
    spec: EncodingSpec

    def cause_targets(self, data: LabelledData) -> npt.NDArray[np.float32]:
        """The prior row of each map's pattern; a one-hot row where a reviewer named the cause."""
        if data.multi_label:
            targets = self.taxonomy.multi_label_targets(data.targets, data.class_names)
        else:
            targets = self.prior[data.targets].copy()
        if data.causes is not None:
            ids = list(self.taxonomy.cause_ids)
            for i, cause in enumerate(data.causes):
                if cause in ids:
                    targets[i] = 0.0
                    targets[i, ids.index(cause)] = 1.0
        return targets


def prepare_data(cfg: TrainConfig) -> Prepared:
    d = cfg.data
    train = load_labelled(d.train)
    if d.val:
        val = load_labelled(d.val, class_names=train.class_names, multi_label=train.multi_label)
    else:
        tr, va = stratified_split(train.keys(), d.val_fraction, cfg.seed)
        val, train = train.subset(va), train.subset(tr)
    if d.limit_per_class:
        train = train.subset(limit_per_class(train.keys(), d.limit_per_class, cfg.seed))
    if d.val_limit_per_class:
        val = val.subset(limit_per_class(val.keys(), d.val_limit_per_class, cfg.seed + 1))
    train = add_synthetic(train, cfg.synth)
    if cfg.model.multi_label != train.multi_label:
        raise WaferscopeError(
            f"model.multi_label is {cfg.model.multi_label} but the training data are "
            f"{'multi' if train.multi_label else 'single'}-label"
        )
    taxonomy = load_taxonomy(cfg.taxonomy)
    prior = taxonomy.matrix(train.class_names)
    return Prepared(train, val, taxonomy, prior, EncodingSpec(size=d.encoding_size))


def build_model(cfg: TrainConfig, prep: Prepared) -> WaferNet:
    return WaferNet(cfg.model, len(prep.train.class_names), len(prep.taxonomy.causes))


def build_loss(cfg: TrainConfig, prep: Prepared) -> MultiTaskLoss:
    alpha = None
    if cfg.loss.class_alpha:
        unknown = set(cfg.loss.class_alpha) - set(prep.train.class_names)
        if unknown:
            raise WaferscopeError(f"loss.class_alpha names unknown classes {sorted(unknown)}")
        alpha = torch.tensor([cfg.loss.class_alpha.get(n, 1.0) for n in prep.train.class_names])
    return MultiTaskLoss(
        torch.from_numpy(prep.prior),
        torch.from_numpy(prep.taxonomy.normal_row()),
        multi_label=prep.train.multi_label,
        gamma=cfg.loss.focal_gamma,
        alpha=alpha,
        pattern_weight=cfg.loss.pattern_weight,
        cause_weight=cfg.loss.cause_weight,
        consistency_weight=cfg.loss.consistency_weight,
    )


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up, then cosine decay to ``floor`` times the base rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def budget_epochs(budget_minutes: float, first_epoch_seconds: float, cap: int) -> int:
    """How many epochs fit ``budget_minutes`` when the first (warm-up included) took this long."""
    fits = int(budget_minutes * 60.0 / max(first_epoch_seconds, 1e-3))
    return max(1, min(cap, fits))


def evaluate_torch(
    model: torch.nn.Module, data: LabelledData, spec: EncodingSpec, rt: Runtime, batch: int
) -> tuple[Metrics, npt.NDArray[np.float32]]:
    probs, _ = predict(model, data.grids, spec, rt, batch, data.multi_label)
    return compute_metrics(data.targets, probs, data.class_names, data.multi_label), probs


def select_score(metrics: Metrics, name: str) -> float:
    return {
        "macro_f1": metrics.macro_f1,
        "macro_f1_defects": metrics.macro_f1_defects,
        "exact_match": metrics.accuracy,
        "accuracy": metrics.accuracy,
    }[name]


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)


def checkpoint_meta(cfg: TrainConfig, prep: Prepared) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "producer": f"waferscope-trainer {__version__}",
        "config": cfg.to_dict(),
        "class_names": list(prep.train.class_names),
        "cause_names": list(prep.taxonomy.cause_ids),
        "multi_label": prep.train.multi_label,
        "taxonomy_text": prep.taxonomy.text,
        "taxonomy_ref": prep.taxonomy.ref,
        "encoding": prep.spec.to_dict(),
        "data_digest": prep.train.digest(),
        "data_files": prep.train.files,
    }


def load_initial_weights(net: WaferNet, checkpoint: Path, meta: dict[str, Any]) -> None:
    """Fine-tuning: copy a run checkpoint's weights into ``net`` (same classes and causes)."""
    if not checkpoint.is_file():
        raise WaferscopeError(f"model.init_checkpoint {checkpoint}: no such file")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key in ("class_names", "cause_names"):
        if list(ckpt.get(key, [])) != meta[key]:
            raise WaferscopeError(
                f"model.init_checkpoint {checkpoint}: {key} {ckpt.get(key)} differ from the "
                f"data's {meta[key]}"
            )
    try:
        net.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        raise WaferscopeError(
            f"model.init_checkpoint {checkpoint}: weights do not fit the model of "
            f"{meta['config']['model']} ({str(exc).splitlines()[0]})"
        ) from None
    log.info("fine-tuning from %s", checkpoint)


def _loader(ds: WaferDataset, sampler: EpochSampler, cfg: TrainConfig) -> DataLoader[Any]:
    workers = cfg.data.num_workers
    return DataLoader(
        ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]


def train(
    cfg: TrainConfig, *, resume: bool = True, show_progress: bool | None = None
) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; return where it is and how it went."""
    rt = resolve_runtime(cfg.run)
    if cfg.run.budget_minutes and rt.world_size > 1:
        raise WaferscopeError("run.budget_minutes works in one process only (not under torchrun)")
    seed_everything(cfg.seed, cfg.run.deterministic)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    prep = prepare_data(cfg)
    meta = checkpoint_meta(cfg, prep)
    if rt.is_main:
        cfg.dump(run_dir / "config.json")
    log.info(
        "train %d maps %s, val %d maps; device %s, precision %s",
        len(prep.train),
        prep.train.class_counts(),
        len(prep.val),
        rt.device,
        rt.precision,
    )
    net = build_model(cfg, prep)
    if cfg.model.init_checkpoint is not None:
        load_initial_weights(net, cfg.model.init_checkpoint, meta)
    net = net.to(rt.device)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    criterion = build_loss(cfg, prep).to(rt.device)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    epoch_samples = cfg.data.epoch_samples or len(prep.train)
    steps_per_epoch = max(1, epoch_samples // (cfg.data.batch_size * rt.world_size))
    warmup = int(cfg.optim.warmup_epochs * steps_per_epoch)
    # planned["epochs"] may shrink after epoch 1 (run.budget_minutes); the schedule reads it.
    planned = {"epochs": cfg.optim.epochs}
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, steps_per_epoch * planned["epochs"], warmup, cfg.optim.min_lr_ratio),
    )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    state: dict[str, Any] = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "bad_epochs": 0}
    history: list[dict[str, Any]] = []
    run_id: str | None = None
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        if ckpt.get("config") != cfg.to_dict():
            log.warning("resuming %s with a config that differs from the checkpoint's", last_path)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        planned["epochs"] = int(state.get("planned_epochs", cfg.optim.epochs))
        history = ckpt["history"]
        run_id = ckpt.get("mlflow_run_id")
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed from %s after epoch %d", last_path, state["epoch"])
    model = wrap_parallel(net, rt, cfg.run.distributed)
    tracker = Tracker(cfg.tracking)
    if rt.is_main:
        tracker.start(cfg.name, cfg.to_dict(), run_id)
    train_ds = WaferDataset(
        prep.train, prep.cause_targets(prep.train), prep.spec, cfg.augment, cfg.seed
    )
    weights = sampling_weights(
        class_keys(prep.train.targets, prep.train.multi_label), cfg.data.balance_power
    )
    sampler = EpochSampler(
        weights,
        steps_per_epoch * cfg.data.batch_size * rt.world_size,
        cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    mixing = mixing_enabled(cfg.augment)
    if mixing and prep.train.multi_label:
        raise WaferscopeError("augment mixup/cutmix/label_smoothing are for single-label data")
    n_classes = len(prep.train.class_names)
    progress = sys.stderr.isatty() if show_progress is None else show_progress
    started = time.monotonic()
    stopped_early = False
    status = "FAILED"
    try:
        while state["epoch"] < planned["epochs"]:
            epoch = state["epoch"] + 1
            t0 = time.monotonic()
            sampler.set_epoch(epoch)
            train_ds.set_epoch(epoch)
            mix_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch + rt.rank * 7)
            model.train()
            sums = np.zeros(4)
            bar = tqdm(
                _loader(train_ds, sampler, cfg),
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{planned['epochs']}",
                disable=not rt.is_main,
                mininterval=1.0 if progress else 60.0,
                file=sys.stderr,
                leave=progress,
            )
            for batch in bar:
                xb, yb, cb = batch
                if mixing:
                    mixed = mix_batch(xb, yb, cb, n_classes, cfg.augment, mix_gen)
                    xb, yb, cb = mixed.x, mixed.target, mixed.cause
                x = xb.to(rt.device, non_blocking=True, memory_format=memory_format)
                y, c = yb.to(rt.device, non_blocking=True), cb.to(rt.device, non_blocking=True)
                with rt.autocast():
                    out = model(x)
                parts = criterion(out[0], out[1], y, c)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(parts.total).backward()
                if cfg.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step_losses = [
                    parts.total.item(),
                    parts.pattern.item(),
                    parts.cause.item(),
                    parts.consistency.item(),
                ]
                sums += step_losses
                bar.set_postfix(loss=f"{step_losses[0]:.4f}", refresh=False)
            bar.close()
            train_s = time.monotonic() - t0
            n = max(1, steps_per_epoch)
            row: dict[str, Any] = {
                "epoch": epoch,
                "loss": sums[0] / n,
                "loss_pattern": sums[1] / n,
                "loss_cause": sums[2] / n,
                "loss_consistency": sums[3] / n,
                "lr": scheduler.get_last_lr()[0],
                "train_seconds": train_s,
            }
            if rt.is_main:
                t1 = time.monotonic()
                metrics, _ = evaluate_torch(
                    unwrap(model), prep.val, prep.spec, rt, cfg.data.eval_batch_size
                )
                row["eval_seconds"] = time.monotonic() - t1
                row.update(metrics.scalars("val_"))
                score = select_score(metrics, cfg.run.select_metric)
                row["score"] = score
                improved = score > state["best_score"]
                if improved:
                    state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
                    _atomic_save(
                        {
                            **meta,
                            "model": unwrap(model).state_dict(),
                            "epoch": epoch,
                            "metrics": metrics.to_dict(),
                        },
                        best_path,
                    )
                else:
                    state["bad_epochs"] += 1
                state["epoch"] = epoch
                if epoch == 1 and cfg.run.budget_minutes and "planned_epochs" not in state:
                    planned["epochs"] = budget_epochs(
                        cfg.run.budget_minutes, time.monotonic() - started, cfg.optim.epochs
                    )
                    log.info("run.budget_minutes: %d epochs fit", planned["epochs"])
                state["planned_epochs"] = planned["epochs"]
                history.append(row)
                _atomic_save(
                    {
                        **meta,
                        "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "state": state,
                        "history": history,
                        "mlflow_run_id": tracker.run_id,
                        "torch_rng": torch.get_rng_state(),
                    },
                    last_path,
                )
                with (run_dir / "history.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                log.info(
                    "epoch %d: loss %.4f, val %s %.4f (best %.4f @ %d), %.0f s + %.0f s eval",
                    epoch,
                    row["loss"],
                    cfg.run.select_metric,
                    score,
                    state["best_score"],
                    state["best_epoch"],
                    train_s,
                    row["eval_seconds"],
                )
            else:
                state["epoch"] = epoch
            if state["bad_epochs"] >= cfg.run.early_stopping_patience:
                stopped_early = True
                log.info("early stop: no improvement for %d epochs", state["bad_epochs"])
                break
            if cfg.run.max_minutes and (time.monotonic() - started) / 60 > cfg.run.max_minutes:
                log.info("stopping: run.max_minutes = %s reached", cfg.run.max_minutes)
                break
        status = "FINISHED"
    finally:
        if rt.is_main:
            summary = {
                "best_epoch": state["best_epoch"],
                "best_score": state["best_score"],
                "select_metric": cfg.run.select_metric,
                "epochs_run": state["epoch"],
                "stopped_early": stopped_early,
                "precision": rt.precision,
                "device": str(rt.device),
                "epoch_train_seconds": [h["train_seconds"] for h in history],
                "epoch_eval_seconds": [h.get("eval_seconds", 0.0) for h in history],
            }
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            tracker.log_artifact(run_dir / "config.json")
            tracker.log_artifact(run_dir / "summary.json")
            tracker.end(status)
    return TrainResult(
        run_dir, state["best_epoch"], state["best_score"], state["epoch"], stopped_early, history
    )
