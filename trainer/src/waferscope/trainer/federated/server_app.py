"""The Flower ServerApp: rounds of FedAvg/FedProx over the SuperNodes, gate-set evaluation after
every round, resumable state, and the candidate model (checkpoint + engine bundle) at the end.

Run config (``flower_app/pyproject.toml``, overridable with ``flwr run --run-config``):
``train-config`` (the trainer config file on the server: model, optimiser, ``data.val`` = the
gate set, ``data.train`` = server-held maps used only for INT8 calibration), ``num-rounds``,
``strategy`` (``fedavg`` | ``fedprox``), ``proximal-mu``, ``local-steps``, ``fraction-train``,
``min-train-nodes``, ``min-available-nodes``, ``fraction-evaluate``, ``min-evaluate-nodes``,
``round-timeout``, ``max-round-retries``, ``dp-noise-multiplier`` / ``dp-clipping-norm`` /
``dp-delta`` (server-side DP with fixed clipping; 0 = off), ``bundle`` (build the engine bundle
at the end), ``initial-weights`` (a trainer checkpoint the first round starts from, e.g. the
shipped engine's; empty = random weights).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.app.typing import ConfigRecordValues
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedProx,
    Strategy,
)
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from waferscope.trainer.config import load_config
from waferscope.trainer.federated.privacy import epsilon_spent
from waferscope.trainer.federated.server_state import FederatedRun, FederatedRunError, RoundRecord

log = logging.getLogger(__name__)

app = ServerApp()


@dataclass(frozen=True)
class FederatedSettings:
    """The run config of a federated run, typed."""

    train_config: Path
    num_rounds: int
    strategy: str
    proximal_mu: float
    local_steps: int
    fraction_train: float
    min_train_nodes: int
    min_available_nodes: int
    fraction_evaluate: float
    min_evaluate_nodes: int
    round_timeout: float
    max_round_retries: int
    dp_noise_multiplier: float
    dp_clipping_norm: float
    dp_delta: float
    bundle: bool
    initial_weights: Path | None = None

    @classmethod
    def from_run_config(cls, rc: dict[str, Any]) -> FederatedSettings:
        try:
            settings = cls(
                train_config=Path(str(rc["train-config"])),
                num_rounds=int(rc["num-rounds"]),
                strategy=str(rc.get("strategy", "fedavg")).lower(),
                proximal_mu=float(rc.get("proximal-mu", 0.0)),
                local_steps=int(rc["local-steps"]),
                fraction_train=float(rc.get("fraction-train", 1.0)),
                min_train_nodes=int(rc.get("min-train-nodes", 2)),
                min_available_nodes=int(rc.get("min-available-nodes", 2)),
                fraction_evaluate=float(rc.get("fraction-evaluate", 1.0)),
                min_evaluate_nodes=int(rc.get("min-evaluate-nodes", 2)),
                round_timeout=float(rc.get("round-timeout", 600.0)),
                max_round_retries=int(rc.get("max-round-retries", 2)),
                dp_noise_multiplier=float(rc.get("dp-noise-multiplier", 0.0)),
                dp_clipping_norm=float(rc.get("dp-clipping-norm", 0.0)),
                dp_delta=float(rc.get("dp-delta", 1e-5)),
                bundle=bool(rc.get("bundle", True)),
                initial_weights=Path(str(rc["initial-weights"]))
                if str(rc.get("initial-weights", "")).strip()
                else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FederatedRunError(f"run config: missing or invalid setting {exc}") from None
        if settings.strategy not in ("fedavg", "fedprox"):
            raise FederatedRunError(
                f"run config strategy {settings.strategy!r}: use 'fedavg' or 'fedprox'"
            )
        if settings.dp_noise_multiplier > 0 and settings.dp_clipping_norm <= 0:
            raise FederatedRunError("run config: dp-noise-multiplier needs dp-clipping-norm > 0")
        return settings

    @property
    def dp(self) -> bool:
        return self.dp_noise_multiplier > 0


class NodeReports:
    """Collects, per round, which nodes replied and their data digests (metrics aggregation)."""

    def __init__(self) -> None:
        self.nodes: list[int] = []
        self.digests: dict[str, str] = {}

    def aggregate(self, replies: list[RecordDict], weighting_key: str) -> MetricRecord:
        for reply in replies:
            node = reply.config_records.get("node")
            if node is not None:
                node_id = int(node["node-id"])  # type: ignore[arg-type]
                self.nodes.append(node_id)
                self.digests[str(node_id)] = str(node["data-digest"])
        return aggregate_metricrecords(replies, weighting_key)


def build_strategy(settings: FederatedSettings, reports: NodeReports) -> Strategy:
    common: dict[str, Any] = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": settings.min_train_nodes,
        "min_evaluate_nodes": settings.min_evaluate_nodes,
        "min_available_nodes": settings.min_available_nodes,
        "train_metrics_aggr_fn": reports.aggregate,
    }
    strategy: Strategy
    if settings.strategy == "fedprox":
        strategy = FedProx(proximal_mu=settings.proximal_mu, **common)
    else:
        strategy = FedAvg(**common)
    if settings.dp:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=settings.dp_noise_multiplier,
            clipping_norm=settings.dp_clipping_norm,
            num_sampled_clients=settings.min_train_nodes,
        )
    return strategy


def record_bytes(record: ArrayRecord) -> int:
    return sum(len(array.data) for array in record.values())


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the remaining rounds, then write the candidate (best.pt, summary, bundle)."""
    settings = FederatedSettings.from_run_config(dict(context.run_config))
    cfg = load_config(settings.train_config)
    torch.set_num_threads(cfg.run.threads or 1)
    run = FederatedRun(cfg, initial_weights=settings.initial_weights)
    cfg_json = json.dumps(cfg.to_dict())
    started = time.monotonic()
    retries = 0
    while run.round < settings.num_rounds:
        rnd = run.round + 1
        reports = NodeReports()
        strategy = build_strategy(settings, reports)
        arrays = ArrayRecord(run.weights())
        t0 = time.monotonic()
        config: dict[str, ConfigRecordValues] = {
            "train-config": cfg_json,
            "local-steps": settings.local_steps,
            "round": rnd,
        }
        result = strategy.start(
            grid,
            arrays,
            num_rounds=1,
            timeout=settings.round_timeout,
            train_config=ConfigRecord(config),
            evaluate_config=ConfigRecord({"train-config": cfg_json, "round": rnd}),
        )
        if 1 not in result.train_metrics_clientapp:
            retries += 1
            log.warning("round %d: no usable replies (try %d)", rnd, retries)
            if retries > settings.max_round_retries:
                raise FederatedRunError(f"round {rnd}: no usable replies after {retries} tries")
            continue
        retries = 0
        size = record_bytes(arrays)
        n_nodes = len(reports.nodes)
        record = RoundRecord(
            round=rnd,
            nodes=sorted(reports.nodes),
            node_digests=reports.digests,
            train=dict(result.train_metrics_clientapp[1]),  # type: ignore[arg-type]
            federated_eval=dict(result.evaluate_metrics_clientapp.get(1, {})),  # type: ignore[arg-type]
            gate={},
            score=0.0,
            seconds=time.monotonic() - t0,
            bytes_down=size * n_nodes,
            bytes_up=size * n_nodes,
        )
        if settings.dp:
            record.privacy = {
                "epsilon": epsilon_spent(settings.dp_noise_multiplier, rnd, settings.dp_delta),
                "delta": settings.dp_delta,
                "noise-multiplier": settings.dp_noise_multiplier,
                "clipping-norm": settings.dp_clipping_norm,
            }
            log.info("privacy budget after round %d: %s", rnd, record.privacy)
        run.finish_round(record, result.arrays.to_torch_state_dict())
    extra: dict[str, Any] = {"seconds": time.monotonic() - started, "strategy": settings.strategy}
    if run.history and run.history[-1].get("privacy"):
        extra["privacy"] = run.history[-1]["privacy"]
    summary = run.write_summary(extra)
    log.info("federated run finished: %s", summary)
    if settings.bundle:
        from waferscope.trainer.bundler import build_bundle

        bundle = build_bundle(run.run_dir / "best.pt", run.run_dir / "bundle", threads=1)
        log.info("candidate bundle %s (%s)", bundle.folder, bundle.manifest.model_version)
