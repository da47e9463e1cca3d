"""Training jobs: the retraining trigger (new labels, drift alerts) and the worker's job states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from waferscope.hub.config import TrainingConfig
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import AlertRow, Label, TrainingJob
from waferscope.hub.store.audit import audit
from waferscope.protocols.errors import WaferscopeError

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
OPEN_STATES: Final = (QUEUED, RUNNING)
REASONS: Final = ("labels", "drift", "manual")


class TrainingJobError(WaferscopeError):
    """A training-job request that cannot be honoured (unknown job, wrong state or worker)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What a worker reports while it runs a job."""

    progress: float
    stage: str
    lines: Sequence[str] = ()


def job_json(job: TrainingJob, *, with_log: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": job.id,
        "reason": job.reason,
        "detail": job.detail,
        "state": job.state,
        "created_at": job.created_at.isoformat() + "Z",
        "created_by": job.created_by,
        "labels_total": job.labels_total,
        "worker": job.worker,
        "claimed_at": job.claimed_at.isoformat() + "Z" if job.claimed_at else None,
        "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
        "progress": job.progress,
        "stage": job.stage,
        "release_id": job.release_id,
        "version": job.version,
        "metrics": job.metrics,
        "error": job.error,
    }
    if with_log:
        out["log"] = job.log
    return out


def label_count(session: Session, since: datetime | None = None) -> int:
    q = select(func.count()).select_from(Label)
    if since is not None:
        q = q.where(Label.labelled_at > since)
    return int(session.scalar(q) or 0)


def _last_job(session: Session) -> TrainingJob | None:
    return session.scalars(
        select(TrainingJob).order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc()).limit(1)
    ).first()


def open_job(session: Session) -> TrainingJob | None:
    return session.scalars(
        select(TrainingJob).where(TrainingJob.state.in_(OPEN_STATES)).limit(1)
    ).first()


def request_training(
    session: Session, reason: str, detail: str = "", *, actor: str = "hub"
) -> TrainingJob:
    """Queue a training job now, or return the one already queued or running.

    Other parts call this (a drift detector, an engineer's button); one open job at a time, so a
    burst of triggers makes one job.
    """
    if reason not in REASONS:
        raise TrainingJobError(f"training job reason {reason!r} is not one of {list(REASONS)}")
    existing = open_job(session)
    if existing is not None:
        return existing
    now = utcnow()
    job = TrainingJob(
        reason=reason,
        detail=detail,
        state=QUEUED,
        created_at=now,
        created_by=actor,
        labels_total=label_count(session),
        progress=0.0,
        stage="queued",
        log="",
    )
    session.add(job)
    session.flush()
    audit(session, actor, "training.queue", str(job.id), {"reason": reason, "detail": detail})
    return job


def maybe_trigger(session: Session, config: TrainingConfig) -> TrainingJob | None:
    """Queue a job when enough new labels or a drift alert arrived since the last job."""
    if open_job(session) is not None:
        return None
    last = _last_job(session)
    since = last.created_at if last is not None else None
    if config.label_trigger > 0:
        fresh = label_count(session, since)
        if fresh >= config.label_trigger:
            return request_training(
                session, "labels", f"{fresh} new reviewer labels (trigger {config.label_trigger})"
            )
    if config.drift_kinds:
        q = select(AlertRow).where(AlertRow.rule_kind.in_(config.drift_kinds))
        if since is not None:
            q = q.where(AlertRow.ingested_at > since)
        alert = session.scalars(q.order_by(AlertRow.ingested_at).limit(1)).first()
        if alert is not None:
            return request_training(
                session, "drift", f"alert {alert.alert_id} ({alert.rule_kind}): {alert.title}"
            )
    return None


def claim(session: Session, worker: str) -> TrainingJob | None:
    """Give the oldest queued job to this worker (an atomic compare-and-set on its state)."""
    worker = worker.strip()
    if not worker:
        raise TrainingJobError("a claim needs the worker's name")
    candidates = session.scalars(
        select(TrainingJob.id)
        .where(TrainingJob.state == QUEUED)
        .order_by(TrainingJob.created_at, TrainingJob.id)
        .limit(5)
    ).all()
    now = utcnow()
    for job_id in candidates:
        taken = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.state == QUEUED)
            .values(state=RUNNING, worker=worker, claimed_at=now, updated_at=now, stage="claimed")
        )
        if getattr(taken, "rowcount", 0) == 1:
            job = session.get(TrainingJob, job_id)
            assert job is not None
            session.refresh(job)
            audit(session, worker, "training.claim", str(job_id))
            return job
    return None


def _running(session: Session, job_id: int, worker: str) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise TrainingJobError(f"no training job {job_id}", missing=True)
    if job.state != RUNNING:
        raise TrainingJobError(f"training job {job_id} is {job.state}, not running")
    if job.worker != worker:
        raise TrainingJobError(f"training job {job_id} belongs to worker {job.worker!r}")
    return job


def _append_log(job: TrainingJob, lines: Sequence[str], limit: int) -> None:
    if not lines:
        return
    text = (job.log or "") + "".join(line.rstrip("\n") + "\n" for line in lines)
    job.log = text[-limit:]


def report_progress(
    session: Session, job_id: int, worker: str, report: JobProgress, *, log_limit: int
) -> TrainingJob:
    if not 0.0 <= report.progress <= 1.0:
        raise TrainingJobError(f"progress {report.progress} is outside 0..1")
    job = _running(session, job_id, worker)
    job.progress = max(job.progress, report.progress)
    if report.stage:
        job.stage = report.stage[:64]
    _append_log(job, report.lines, log_limit)
    job.updated_at = utcnow()
    return job


def finish(
    session: Session,
    job_id: int,
    worker: str,
    *,
    ok: bool,
    release_id: str = "",
    version: str = "",
    metrics: dict[str, Any] | None = None,
    error: str = "",
    lines: Sequence[str] = (),
    log_limit: int,
) -> TrainingJob:
    """Close a running job: succeeded with the registered release, or failed with its reason."""
    job = _running(session, job_id, worker)
    if ok and not release_id.strip():
        raise TrainingJobError("a succeeded job needs the release id the registry returned")
    if not ok and not error.strip():
        raise TrainingJobError("a failed job needs its reason")
    _append_log(job, lines, log_limit)
    now = utcnow()
    job.state = SUCCEEDED if ok else FAILED
    job.finished_at = job.updated_at = now
    job.metrics = metrics
    if ok:
        job.progress, job.stage = 1.0, "registered"
        job.release_id, job.version = release_id.strip(), version.strip() or None
    else:
        job.stage, job.error = "failed", error.strip()
    audit(
        session,
        worker,
        "training.succeed" if ok else "training.fail",
        str(job_id),
        {"release_id": job.release_id, "error": job.error},
    )
    return job


def list_jobs(session: Session, limit: int = 50) -> list[TrainingJob]:
    return list(
        session.scalars(
            select(TrainingJob)
            .order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc())
            .limit(limit)
        )
    )
