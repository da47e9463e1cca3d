"""``waferscope train-worker``: take a hub's training job, fine-tune, gate, bundle, sign, register.

One job, step by step (each step is reported to the hub as progress and log lines):

1. claim the oldest queued job (``POST /api/v1/training-jobs/claim``);
2. pull the labels export (``GET /api/v1/labels/export``: the reviewed maps themselves, in the
   WM-811K ``.npz`` layout) and split it: every ``held_every``-th label is held out for the gate;
3. fine-tune from the current engine's run checkpoint on the base training data plus the other
   reviewer labels (the base config with ``model.init_checkpoint``; short, configurable);
4. build the bundle, whose metrics are the gate set's: base validation files + the held labels;
5. gate: the INT8 macro-F1 on that set must reach ``min_macro_f1``;
6. sign it as a release of the ``candidate`` channel and ``POST /api/v1/releases`` it;
7. report success with the registry's release id.

Any failure reports the job failed with its reason; since registration is the last step before
success, a failed job never leaves a registered release behind.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.release import build_release, load_private
from waferscope.protocols.release import envelope as release_envelope
from waferscope.trainer.config import TrainConfig, load_config
from waferscope.trainer.data import write_archive
from waferscope.trainer.hub_client import HubClient

log = logging.getLogger(__name__)


class RetrainError(WaferscopeError):
    """A training job cannot go on (bad labels, gate not met, signing failed, ...)."""


class WorkerSettings(BaseModel):
    """Where the worker finds its hub, its base run and its release key."""

    model_config = ConfigDict(extra="forbid")

    hub_url: str
    registry_url: str | None = Field(None, description="Release registry (default: the hub).")
    username: str
    password: str
    worker: str = Field(default_factory=socket.gethostname)
    base_config: Path = Field(description="The training config of the current engine's run.")
    checkpoint: Path = Field(description="The current engine's run checkpoint (best.pt).")
    release_key: Path
    delegation: Path
    channel: str = "candidate"
    release_days: int = Field(30, ge=1)
    workdir: Path = Path("trainer/jobs")
    epochs: int = Field(2, ge=1, description="Fine-tuning epochs.")
    lr: float = Field(3e-4, gt=0)
    held_every: int = Field(5, ge=2, description="Every n-th reviewer label joins the gate set.")
    min_macro_f1: float = Field(0.0, ge=0, le=1, description="Gate: INT8 macro-F1 at least this.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted config overrides for the fine-tune run."
    )


@dataclass(frozen=True, slots=True)
class ReviewedSplit:
    train: Path | None
    held: Path | None
    used: int
    held_out: int
    left_out: int  # labels of classes the engine does not have
    causes: int  # labels with a reviewer root cause
    causes_trained: int  # of those, fine-tune labels whose cause is one of the engine's causes


def split_export(
    export: Path,
    class_names: tuple[str, ...],
    cause_ids: tuple[str, ...],
    out: Path,
    held_every: int,
) -> ReviewedSplit:
    """The reviewed maps in the engine's class list, split into fine-tune and gate archives.

    The fine-tune archive carries each map's reviewer root cause (``cause``) where it is one of
    the engine's cause ids, so the cause head learns it instead of the prior.
    """
    arrays = load_labelled_arrays(export)
    with np.load(export) as z:
        causes = (
            [str(z["root_cause_names"][i]) for i in z["root_cause"]] if "root_cause" in z else []
        )
    keep, targets = [], []
    for i, t in enumerate(arrays.targets):
        name = arrays.class_names[int(t)]
        if name in class_names:
            keep.append(i)
            targets.append(class_names.index(name))
    left_out = len(arrays.targets) - len(keep)
    held_idx = [k for j, k in enumerate(range(len(keep))) if j % held_every == held_every - 1]
    train_idx = [k for k in range(len(keep)) if k not in set(held_idx)]
    paths: dict[str, Path | None] = {"train": None, "held": None}
    known = [causes[keep[k]] if causes and causes[keep[k]] in cause_ids else "" for k in train_idx]
    for name, idx in (("train", train_idx), ("held", held_idx)):
        if idx:
            path = out / f"reviewed-{name}.npz"
            write_archive(
                path,
                [arrays.maps[keep[k]] for k in idx],
                np.array([targets[k] for k in idx]),
                class_names,
                causes=known if name == "train" else None,
            )
            paths[name] = path
    return ReviewedSplit(
        paths["train"],
        paths["held"],
        len(train_idx),
        len(held_idx),
        left_out,
        sum(1 for c in causes if c),
        sum(1 for c in known if c),
    )


def fine_tune_config(
    settings: WorkerSettings, job_id: int, split: ReviewedSplit, out: Path
) -> TrainConfig:
    base = load_config(settings.base_config, [f"{k}={v}" for k, v in settings.overrides.items()])
    doc = base.to_dict()
    doc["name"] = f"job-{job_id}"
    doc["data"]["train"] = [*doc["data"]["train"], *([str(split.train)] if split.train else [])]
    doc["model"]["init_checkpoint"] = str(settings.checkpoint)
    doc["model"]["pretrained_path"] = None
    doc["optim"]["epochs"] = settings.epochs
    doc["optim"]["lr"] = settings.lr
    doc["run"]["output_dir"] = str(out / "runs")
    doc["tracking"]["enabled"] = False
    return TrainConfig.from_dict(doc, origin=f"job {job_id}")


def gate_archive(
    cfg: TrainConfig, held: Path | None, class_names: tuple[str, ...], out: Path
) -> Path:
    """The fixed gate set: the base validation maps (as the run limits them) + the held labels."""
    from waferscope.trainer.data import limit_per_class, load_labelled

    grids: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    if cfg.data.val:
        val = load_labelled(cfg.data.val, class_names=class_names)
        if cfg.data.val_limit_per_class:
            val = val.subset(
                limit_per_class(val.keys(), cfg.data.val_limit_per_class, cfg.seed + 1)
            )
        grids += [np.asarray(g) for g in val.grids]
        targets.append(val.targets)
    if held is not None:
        reviewed = load_labelled([held], class_names=class_names)
        grids += [np.asarray(g) for g in reviewed.grids]
        targets.append(reviewed.targets)
    if not grids:
        raise RetrainError("no gate set: the base config has no data.val and no label was held out")
    path = out / "gate.npz"
    write_archive(path, grids, np.concatenate(targets), class_names)
    return path


def card_section(job: dict[str, Any], split: ReviewedSplit, metrics: dict[str, float]) -> str:
    if split.causes_trained:
        cause = (
            f"trained: {split.causes_trained} reviewer root-cause labels were its targets in "
            "this fine-tune (the taxonomy prior P(cause | pattern) for every other map); "
            "evidence for wafers like the reviewed ones, still a prior elsewhere"
        )
    elif split.causes:
        cause = (
            f"prior: the taxonomy's P(cause | pattern). {split.causes} reviewer root-cause "
            "labels came with this job's data, none naming one of the engine's cause ids "
            "(`taxonomy.toml`)"
        )
    else:
        cause = "prior: the taxonomy's P(cause | pattern); no reviewer root-cause labels yet"
    return "\n".join(
        [
            "",
            f"## Retraining job {job['job_id']}",
            "",
            f"- Trigger: {job['reason']} ({job['detail']}).",
            f"- Reviewer labels: {split.used} fine-tuned on, {split.held_out} held out for the "
            f"gate, {split.left_out} left out (classes the engine does not have).",
            "- Gate set: the base validation maps (as the run limits them) + the held reviewer "
            "labels; INT8 macro-F1 "
            f"{metrics.get('int8_macro_f1', float('nan')):.4f}, accuracy "
            f"{metrics.get('pattern_accuracy', float('nan')):.4f}.",
            f"- Root-cause head: {cause}.",
            "- Status: candidate release; not deployed until an engineer promotes it.",
            "",
        ]
    )


Report = Callable[[float, str, str], None]


def run_job(settings: WorkerSettings, client: HubClient, job: dict[str, Any]) -> dict[str, Any]:
    """Run one claimed job to a registered candidate; raise on any failure (nothing registered)."""
    from waferscope.protocols.bundle import read_manifest, sha256_file, write_manifest
    from waferscope.trainer.bundler import CARD, build_bundle
    from waferscope.trainer.train import train

    job_id = int(job["job_id"])
    work = settings.workdir / f"job-{job_id}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def report(progress: float, stage: str, line: str) -> None:
        log.info("job %d: %s", job_id, line)
        client.progress(job_id, progress, stage, [f"{datetime.now(UTC):%H:%M:%S} {line}"])

    report(0.05, "export", "pulling the labels export")
    export = work / "labels.npz"
    export.write_bytes(client.labels_export())
    import torch

    base = torch.load(settings.checkpoint, map_location="cpu", weights_only=False)
    classes, cause_ids = tuple(base["class_names"]), tuple(base["cause_names"])
    split = split_export(export, classes, cause_ids, work, settings.held_every)
    report(
        0.1,
        "data",
        f"{split.used} reviewer labels to fine-tune on, {split.held_out} held for the gate, "
        f"{split.left_out} of unknown classes left out; {split.causes_trained} root-cause "
        "labels train the cause head",
    )
    cfg = fine_tune_config(settings, job_id, split, work)
    report(
        0.15, "fine-tune", f"fine-tuning {settings.epochs} epochs from {settings.checkpoint.name}"
    )
    result = train(cfg, resume=False, show_progress=False)
    for row in result.history:
        report(
            0.15,
            "fine-tune",
            f"epoch {row.get('epoch')}: score {row.get('score', float('nan')):.4f}",
        )
    report(0.6, "bundle", f"best epoch {result.best_epoch}; exporting, quantising, evaluating")
    version = f"{cfg.name}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    gate = gate_archive(cfg, split.held, classes, work)
    bundle = build_bundle(
        result.run_dir / "best.pt", work / "bundle", val=[gate], model_version=version
    )
    metrics = {k: float(v) for k, v in bundle.manifest.metrics.items()}
    f1 = metrics.get("int8_macro_f1", 0.0)
    report(0.8, "gate", f"gate INT8 macro-F1 {f1:.4f} (minimum {settings.min_macro_f1})")
    if f1 < settings.min_macro_f1:
        raise RetrainError(f"gate not met: INT8 macro-F1 {f1:.4f} < {settings.min_macro_f1}")
    card = work / "bundle" / CARD
    card.write_text(
        card.read_text(encoding="utf-8") + card_section(job, split, metrics), encoding="utf-8"
    )
    manifest = read_manifest(work / "bundle")
    for entry in manifest.files:
        if entry.path == CARD:
            entry.sha256, entry.size_bytes = sha256_file(card), card.stat().st_size
    write_manifest(work / "bundle", manifest)
    report(0.85, "sign", f"signing {version} for channel {settings.channel}")
    release = work / f"{version}.wsrelease"
    try:
        delegation = release_envelope.from_bytes(
            settings.delegation.read_bytes(), str(settings.delegation)
        )
    except OSError as exc:
        raise RetrainError(f"{settings.delegation}: cannot read ({exc.strerror})") from None
    build_release(
        work / "bundle",
        release,
        key=load_private(settings.release_key),
        delegation=delegation,
        channel=settings.channel,
        version=job_id,
        expires=datetime.now(UTC) + timedelta(days=settings.release_days),
    )
    report(0.9, "register", f"registering {release.name} ({release.stat().st_size} bytes)")
    registered = client.register_release(release.read_bytes())
    return {"release_id": str(registered["release_id"]), "version": version, "metrics": metrics}


def work_once(settings: WorkerSettings, client: HubClient) -> dict[str, Any] | None:
    """Claim and run one job; the hub's record of how it ended (None when no job was queued)."""
    job = client.claim()
    if job is None:
        return None
    job_id = int(job["job_id"])
    try:
        done = run_job(settings, client, job)
    except Exception as exc:  # any failure ends the job as failed, with its reason
        log.exception("job %d failed", job_id)
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        return client.finish(job_id, ok=False, error=reason, lines=[f"failed: {reason}"])
    return client.finish(
        job_id,
        ok=True,
        release_id=done["release_id"],
        version=done["version"],
        metrics=done["metrics"],
        lines=[f"registered release {done['release_id']} ({done['version']})"],
    )


def load_settings(path: Path, password: str | None = None) -> WorkerSettings:
    """Worker settings from a TOML file; relative paths are taken from the file's folder."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RetrainError(f"{path}: cannot read worker settings ({exc})") from None
    if password:
        doc["password"] = password
    for key in ("base_config", "checkpoint", "release_key", "delegation", "workdir"):
        if key in doc and not Path(doc[key]).is_absolute():
            doc[key] = str(path.parent / doc[key])
    try:
        return WorkerSettings.model_validate(doc)
    except ValueError as exc:
        raise RetrainError(f"{path}: {exc}") from None


def client_for(settings: WorkerSettings) -> HubClient:
    return HubClient(
        settings.hub_url,
        settings.username,
        settings.password,
        settings.worker,
        registry_url=settings.registry_url,
    )


def work_forever(settings: WorkerSettings, client: HubClient, poll_s: float) -> None:
    while True:
        outcome = work_once(settings, client)
        if outcome is None:
            time.sleep(poll_s)
        else:
            log.info("job %s: %s", outcome.get("job_id"), outcome.get("state"))
