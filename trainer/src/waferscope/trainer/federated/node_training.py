"""One node's part of a round: load its labelled maps, train from the global weights, evaluate.

A node's dataset is a labelled-map file the node holds (:class:`NodeDataset`): a WM-811K style
``.npz`` archive or any labelled wafer-map file :func:`waferscope.trainer.data.load_labelled`
reads. It is split into the node's own train and validation maps with the trainer's stratified
split, so the node reports how the model does on maps it never trained on.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from waferscope.protocols.errors import WaferscopeError
from waferscope.trainer.config import TrainConfig
from waferscope.trainer.data import EpochSampler, WaferDataset, class_keys, sampling_weights
from waferscope.trainer.metrics import Metrics
from waferscope.trainer.runtime import Runtime, resolve_runtime, seed_everything
from waferscope.trainer.train import (
    Prepared,
    build_loss,
    build_model,
    evaluate_torch,
    prepare_data,
)

StateDict = OrderedDict[str, torch.Tensor]


class NodeDataError(WaferscopeError):
    """A node's labelled maps are missing or unusable for federated training."""


@dataclass(frozen=True)
class NodeDataset:
    """The labelled maps one node holds: one or more files, split locally into train and val."""

    paths: tuple[Path, ...]

    @classmethod
    def from_node_config(cls, value: object) -> NodeDataset:
        """From the SuperNode's ``data-path`` setting: one path, or several joined by ``,``."""
        if not isinstance(value, str) or not value.strip():
            raise NodeDataError("node config 'data-path' is not set (the node's labelled maps)")
        paths = tuple(Path(p.strip()) for p in value.split(",") if p.strip())
        for path in paths:
            if not path.is_file():
                raise NodeDataError(f"node config 'data-path': {path}: no such file")
        return cls(paths)

    def config_for(self, cfg: TrainConfig) -> TrainConfig:
        """The run's training config with this node's maps as its data (val split locally)."""
        data = cfg.data.model_copy(update={"train": list(self.paths), "val": []})
        return cfg.model_copy(update={"data": data})


@dataclass
class LocalResult:
    weights: StateDict
    num_examples: int
    loss: float
    val: Metrics
    data_digest: str


class NodeTrainer:
    """The model, loss and data of one node for one run config (rebuilt per message)."""

    def __init__(self, cfg: TrainConfig, dataset: NodeDataset) -> None:
        self.cfg = dataset.config_for(cfg)
        self.rt: Runtime = resolve_runtime(self.cfg.run)
        seed_everything(self.cfg.seed, self.cfg.run.deterministic)
        try:
            self.prep: Prepared = prepare_data(self.cfg)
        except WaferscopeError as exc:
            raise NodeDataError(f"node data {[str(p) for p in dataset.paths]}: {exc}") from None
        self.model = build_model(self.cfg, self.prep).to(self.rt.device)
        self.criterion = build_loss(self.cfg, self.prep).to(self.rt.device)

    def load(self, weights: StateDict) -> None:
        self.model.load_state_dict(weights)

    def weights(self) -> StateDict:
        return state_copy(self.model)

    def evaluate(self) -> Metrics:
        metrics, _ = evaluate_torch(
            self.model, self.prep.val, self.prep.spec, self.rt, self.cfg.data.eval_batch_size
        )
        return metrics

    def train(self, steps: int, *, proximal_mu: float = 0.0, seed: int = 0) -> float:
        """``steps`` optimiser steps on class-balanced batches; returns the mean loss."""
        cfg, prep = self.cfg, self.prep
        dataset = WaferDataset(
            prep.train, prep.cause_targets(prep.train), prep.spec, cfg.augment, cfg.seed + seed
        )
        dataset.set_epoch(seed)
        weights = sampling_weights(
            class_keys(prep.train.targets, prep.train.multi_label), cfg.data.balance_power
        )
        sampler = EpochSampler(weights, steps * cfg.data.batch_size, cfg.seed)
        sampler.set_epoch(seed)
        loader = DataLoader(
            dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=0, drop_last=True
        )
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        anchor = [p.detach().clone() for p in self.model.parameters()] if proximal_mu else []
        self.model.train()
        total, n = 0.0, 0
        for xb, yb, cb in loader:
            x, y, c = xb.to(self.rt.device), yb.to(self.rt.device), cb.to(self.rt.device)
            out = self.model(x)
            loss = self.criterion(out[0], out[1], y, c).total
            if proximal_mu:
                drift = sum(
                    ((p - a) ** 2).sum()
                    for p, a in zip(self.model.parameters(), anchor, strict=True)
                )
                loss = loss + proximal_mu / 2 * drift
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            total += float(loss.item())
            n += 1
        return total / max(1, n)

    def fit(self, weights: StateDict, steps: int, *, proximal_mu: float, seed: int) -> LocalResult:
        self.load(weights)
        loss = self.train(steps, proximal_mu=proximal_mu, seed=seed)
        return LocalResult(
            self.weights(), len(self.prep.train), loss, self.evaluate(), self.data_digest()
        )

    def data_digest(self) -> str:
        return hashlib.sha256(self.prep.train.digest().encode()).hexdigest()


def state_copy(model: torch.nn.Module) -> StateDict:
    """The model's state dict as CPU tensors that do not share storage with the model."""
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in model.state_dict().items())


def metric_scalars(metrics: Metrics, prefix: str) -> dict[str, int | float]:
    """The headline numbers of a metrics object (what goes into a Flower MetricRecord)."""
    return {
        f"{prefix}macro-f1": float(metrics.macro_f1),
        f"{prefix}accuracy": float(metrics.accuracy),
        f"{prefix}n": int(metrics.n),
    }
