"""The server's resumable round state and the candidate checkpoint of a federated run.

A federated run lives in ``<run.output_dir>/<name>/`` like a local training run:
``server_state.pt`` (round reached, global weights, history; written atomically after every
round, so a restarted ServerApp resumes after the last finished round), ``best.pt`` (a trainer
checkpoint of the round with the best gate-set score, which ``waferscope trainer bundle`` and
:func:`waferscope.trainer.bundler.build_bundle` package), ``history.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.federation_history import HISTORY_FILE, SUMMARY_FILE
from waferscope.trainer.config import TrainConfig
from waferscope.trainer.federated.node_training import StateDict, state_copy
from waferscope.trainer.model import WaferNet
from waferscope.trainer.runtime import Runtime, resolve_runtime
from waferscope.trainer.train import (
    Prepared,
    _atomic_save,
    build_model,
    checkpoint_meta,
    evaluate_torch,
    prepare_data,
    select_score,
)

log = logging.getLogger(__name__)

STATE_FILE = "server_state.pt"


class FederatedRunError(WaferscopeError):
    """A federated run cannot start or continue (config, gate set, saved state)."""


@dataclass
class RoundRecord:
    """What one finished round did: who trained, how the global model scored."""

    round: int
    nodes: list[int]
    node_digests: dict[str, str]
    train: dict[str, float]
    federated_eval: dict[str, float]
    gate: dict[str, float]
    score: float
    seconds: float
    bytes_down: int
    bytes_up: int
    privacy: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FederatedRun:
    """The server side of a run: gate-set evaluation, round state, best checkpoint."""

    def __init__(self, cfg: TrainConfig, *, initial_weights: Path | None = None) -> None:
        if not cfg.data.val:
            raise FederatedRunError(
                "the server's train config needs data.val (the gate set it evaluates on)"
            )
        self.cfg = cfg
        self.rt: Runtime = resolve_runtime(cfg.run)
        self.prep: Prepared = prepare_data(cfg)
        self.model: WaferNet = build_model(cfg, self.prep).to(self.rt.device)
        self.run_dir = cfg.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.round = 0
        self.best_score = -1.0
        self.best_round = 0
        self.history: list[dict[str, Any]] = []
        self.node_digests: dict[str, str] = {}
        self.initial_score: float | None = None
        if not self._resume() and initial_weights is not None:
            self._warm_start(initial_weights)

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def _warm_start(self, path: Path) -> None:
        """Start round 1 from a trainer checkpoint's weights (same architecture), scored first."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state.get("model", state))
        except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as exc:
            raise FederatedRunError(f"initial-weights {path}: cannot load: {exc}") from None
        _, self.initial_score = self.evaluate(self.weights())
        log.info("warm start from %s: gate score %.4f", path, self.initial_score)

    def _resume(self) -> bool:
        if not self.state_path.exists():
            return False
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["weights"])
        except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
            raise FederatedRunError(f"{self.state_path}: cannot resume: {exc}") from None
        self.round = int(state["round"])
        self.best_score = float(state["best_score"])
        self.best_round = int(state["best_round"])
        self.history = list(state["history"])
        self.node_digests = dict(state.get("node_digests", {}))
        self.initial_score = state.get("initial_score")
        log.info("resumed federated run %s after round %d", self.run_dir, self.round)
        return True

    def weights(self) -> StateDict:
        return state_copy(self.model)

    def evaluate(self, weights: StateDict) -> tuple[dict[str, float], float]:
        """Gate-set metrics and the selection score of ``weights`` (loaded into the model)."""
        self.model.load_state_dict(weights)
        metrics, _ = evaluate_torch(
            self.model, self.prep.val, self.prep.spec, self.rt, self.cfg.data.eval_batch_size
        )
        gate = {"gate-macro-f1": metrics.macro_f1, "gate-accuracy": metrics.accuracy}
        self._last_metrics = metrics
        return gate, select_score(metrics, self.cfg.run.select_metric)

    def meta(self) -> dict[str, Any]:
        meta = checkpoint_meta(self.cfg, self.prep)
        listing = json.dumps(sorted(self.node_digests.items())).encode()
        meta["data_digest"] = hashlib.sha256(listing).hexdigest()
        meta["data_files"] = [
            {"name": f"node {node}", "sha256": digest, "format": "node-local"}
            for node, digest in sorted(self.node_digests.items())
        ]
        meta["federated"] = {"rounds": self.round, "best_round": self.best_round}
        return meta

    def finish_round(self, record: RoundRecord, weights: StateDict) -> None:
        """Evaluate the new global weights, keep the best, save the state (atomically)."""
        self.node_digests.update(record.node_digests)
        record.gate, record.score = self.evaluate(weights)
        self.round = record.round
        if record.score > self.best_score:
            self.best_score, self.best_round = record.score, record.round
            _atomic_save(
                {
                    **self.meta(),
                    "model": weights,
                    "epoch": record.round,
                    "metrics": self._last_metrics.to_dict(),
                },
                self.run_dir / "best.pt",
            )
        row = record.row()
        self.history.append(row)
        _atomic_save(
            {
                "round": self.round,
                "weights": weights,
                "best_score": self.best_score,
                "best_round": self.best_round,
                "history": self.history,
                "node_digests": self.node_digests,
                "initial_score": self.initial_score,
                "config": self.cfg.to_dict(),
            },
            self.state_path,
        )
        with (self.run_dir / HISTORY_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"epoch": record.round, **row}) + "\n")
        log.info(
            "round %d: nodes %s, gate %s %.4f (best %.4f @ %d)",
            record.round,
            record.nodes,
            self.cfg.run.select_metric,
            record.score,
            self.best_score,
            self.best_round,
        )

    def write_summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        summary = {
            "best_epoch": self.best_round,
            "best_score": self.best_score,
            "select_metric": self.cfg.run.select_metric,
            "epochs_run": self.round,
            "rounds": self.round,
            "federated": True,
            "initial_score": self.initial_score,
            **extra,
        }
        (self.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary
