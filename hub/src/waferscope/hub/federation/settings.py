"""The ``[federation]`` section of the hub's configuration (the SuperLink the hub runs, runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from waferscope.protocols.settings import Section


class FederationConfig(Section):
    """Federated retraining with Flower: the hub runs the SuperLink, provisions node keys and
    submits runs when enough new labels exist (needs the hub's ``[federated]`` extra)."""

    enabled: bool = Field(default=False, description="Run the SuperLink and schedule rounds.")
    superlink_host: str = Field(default="0.0.0.0", description="Address the SuperLink binds.")
    superlink_port: int = Field(
        default=9092, ge=1, le=65535, description="SuperLink port (Fleet, Control, Runtime APIs)."
    )
    public_host: str = Field(
        default="localhost",
        description="Host name edges dial; written into the SuperLink's TLS certificate.",
    )
    state_dir: Path | None = Field(
        default=None,
        description="TLS CA, SuperLink certificate, node keys, SuperLink database and run "
        "state. Empty: <data_dir>/federation.",
    )
    app_dir: Path | None = Field(
        default=None,
        description="The Flower App folder submitted with 'flwr run' (the trainer's "
        "federated/flower_app). Empty: no runs are submitted.",
    )
    train_config: Path | None = Field(
        default=None,
        description="The server's trainer config (model, gate set) passed as 'train-config'; "
        "its run.output_dir/name holds history.jsonl, read for the federation page.",
    )
    min_new_labels: int = Field(
        default=200, ge=1, description="New labels (since the last run) that start a run."
    )
    rounds: int = Field(default=5, ge=1, le=1000, description="Rounds per run.")
    strategy: Literal["fedavg", "fedprox"] = Field(default="fedavg", description="Aggregation.")
    proximal_mu: float = Field(default=0.0, ge=0.0, description="FedProx proximal term.")
    min_nodes: int = Field(default=2, ge=1, description="Nodes a round needs (train + online).")
    check_interval_s: float = Field(
        default=300.0, gt=0, description="How often the scheduler counts new labels."
    )
    release_key: Path | None = Field(
        default=None,
        description="Release private key (PEM, 'waferscope release keygen --root-key') that signs "
        "a finished run's candidate bundle; with release_delegation, the candidate is registered "
        "in the hub's release registry. Empty: the bundle stays in the run folder.",
    )
    release_delegation: Path | None = Field(
        default=None, description="That key's delegation.json (certified by a trusted root)."
    )
    release_channel: str = Field(
        default="candidate", min_length=1, description="Channel of the registered candidates."
    )
    release_days: int = Field(
        default=30, ge=1, le=3650, description="Days until a registered candidate expires."
    )
