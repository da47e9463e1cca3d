"""Training jobs over HTTP: the train-worker's API (claim, progress, finish) and the jobs page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.response import Template
from sqlalchemy.orm import Session

from waferscope.hub import auth
from waferscope.hub.config import TrainingConfig
from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import TrainingJob
from waferscope.hub.store import training
from waferscope.hub.web.security import require
from waferscope.hub.web.views import AnyRequest, HubDependency, provide_hub


class TrainingJobs:
    """The jobs of one hub: its database and its training configuration (the injected service)."""

    def __init__(self, db: Database, config: TrainingConfig) -> None:
        self.db = db
        self.config = config

    @contextmanager
    def writing(self) -> Iterator[Session]:
        try:
            with self.db.session(write=True) as s:
                yield s
        except training.TrainingJobError as exc:
            if exc.missing:
                raise NotFoundException(str(exc)) from None
            raise ClientException(str(exc), status_code=409) from None

    def get(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            job = s.get(TrainingJob, job_number(job_id))
            if job is None:
                raise NotFoundException(f"no training job {job_id}")
            return training.job_json(job)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [training.job_json(j) for j in training.list_jobs(s, limit)]


Jobs = NamedDependency[TrainingJobs]


def job_number(text: str) -> int:
    """A job id from the path (ids are integers; anything else names no job)."""
    if not text.isdigit():
        raise NotFoundException(f"no training job {text!r}")
    return int(text)


def provide_jobs(state: State) -> TrainingJobs:
    hub = provide_hub(state)
    return TrainingJobs(hub.db, hub.config.training)


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


@dataclass
class ClaimRequest:
    worker: str


@dataclass
class CreateRequest:
    detail: str = ""


@dataclass
class ProgressRequest:
    worker: str
    progress: float
    stage: str = ""
    lines: list[str] = field(default_factory=list)


@dataclass
class FinishRequest:
    worker: str
    ok: bool
    release_id: str = ""
    version: str = ""
    metrics: dict[str, Any] | None = None
    error: str = ""
    lines: list[str] = field(default_factory=list)


@get("/", opt=_perm(auth.VIEW), sync_to_thread=True)
def list_jobs(jobs: Jobs) -> dict[str, Any]:
    """The latest training jobs, newest first, with progress and log."""
    return {"jobs": jobs.recent()}


@get("/{job_id:str}", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_job(jobs: Jobs, job_id: FromPath[str]) -> dict[str, Any]:
    return jobs.get(job_id)


@post("/", opt=_perm(auth.TRAINING), sync_to_thread=True)
def create_job(request: AnyRequest, jobs: Jobs, data: JSONBody[CreateRequest]) -> dict[str, Any]:
    """Queue a job by hand (or return the one already open)."""
    who = require(request)
    with jobs.writing() as s:
        job = training.request_training(s, "manual", data.detail, actor=who.username)
        return training.job_json(job)


@post("/claim", opt=_perm(auth.TRAINING), sync_to_thread=True, status_code=200)
def claim_job(jobs: Jobs, data: JSONBody[ClaimRequest]) -> Response[dict[str, Any] | None]:
    """The oldest queued job for this worker (204 when there is none).

    The trigger is checked first, so a drift alert that arrived since the last job turns into a
    job at the next poll.
    """
    with jobs.writing() as s:
        training.maybe_trigger(s, jobs.config)
        s.flush()
        job = training.claim(s, data.worker)
        if job is None:
            return Response(None, status_code=204)
        return Response(training.job_json(job, with_log=False))


@post("/{job_id:str}/progress", opt=_perm(auth.TRAINING), sync_to_thread=True, status_code=200)
def job_progress(
    jobs: Jobs, job_id: FromPath[str], data: JSONBody[ProgressRequest]
) -> dict[str, Any]:
    report = training.JobProgress(data.progress, data.stage, data.lines)
    with jobs.writing() as s:
        job = training.report_progress(
            s, job_number(job_id), data.worker, report, log_limit=jobs.config.log_max_chars
        )
        return {"job_id": job.id, "state": job.state, "progress": job.progress}


@post("/{job_id:str}/finish", opt=_perm(auth.TRAINING), sync_to_thread=True, status_code=200)
def finish_job(jobs: Jobs, job_id: FromPath[str], data: JSONBody[FinishRequest]) -> dict[str, Any]:
    """Succeeded (with the release id the registry returned) or failed (with the reason)."""
    with jobs.writing() as s:
        job = training.finish(
            s,
            job_number(job_id),
            data.worker,
            ok=data.ok,
            release_id=data.release_id,
            version=data.version,
            metrics=data.metrics,
            error=data.error,
            lines=data.lines,
            log_limit=jobs.config.log_max_chars,
        )
        return training.job_json(job, with_log=False)


@get("/", opt=_perm(auth.VIEW), sync_to_thread=True)
def jobs_page(request: AnyRequest, hub: HubDependency, jobs: Jobs) -> Template:
    from waferscope.hub.web.ui import page

    return page(request, hub, "training.html.j2", jobs=jobs.recent())


DEPENDENCIES = {"jobs": Provide(provide_jobs, sync_to_thread=False)}

API = Router(
    path="/api/v1/training-jobs",
    route_handlers=[list_jobs, get_job, create_job, claim_job, job_progress, finish_job],
    dependencies=DEPENDENCIES,
    tags=["training"],
)
PAGES = Router(path="/ui/training", route_handlers=[jobs_page], dependencies=DEPENDENCIES)
ROUTES = [API, PAGES]
