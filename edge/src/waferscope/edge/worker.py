"""The processing worker: files in, stored results and alerts out, one micro-batch at a time.

Ingest sources (hot folder, gRPC) put :class:`IngestJob`s on a bounded queue. The worker takes
a job, parses and prepares its wafers, keeps taking jobs until ``model.max_batch`` wafers are
ready or ``model.max_wait_ms`` has passed, runs the engine once per batch (reading the model
slot once, so a hot swap lands between batches), builds the results and alerts, and commits
everything with the jobs' file records in one transaction. Only then is each job told its
outcome (the hot folder moves the file, gRPC answers). A crash before the commit leaves no trace,
and the file is processed again; a crash after it leaves the record, and the file is not.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from waferscope.edge import observe
from waferscope.edge.alerts import AlertEngine
from waferscope.edge.config import EdgeConfig
from waferscope.edge.engine import ModelSlot, pipeline_settings
from waferscope.edge.jobs import IngestJob, JobOutcome, JobStatus, WaferOutcome, format_error_code
from waferscope.edge.metrics import AgentMetrics
from waferscope.edge.store import FileRecord, Store, estimated_bytes
from waferscope.protocols.errors import FormatError, WaferscopeError
from waferscope.protocols.formats import ReadOptions, RetestPolicy
from waferscope.protocols.inference import (
    Classification,
    Model,
    PipelineSettings,
    PreparedWafer,
    WaferRejectedError,
    classify_batch,
    prepare,
    read_wafers,
    wafer_result,
)
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import alert_pb2, result_pb2

log = logging.getLogger(__name__)
Classifier = Callable[[list[PreparedWafer], Model, PipelineSettings], list[Classification]]
"""Classifies one micro-batch with a model (``classify_batch``, or the release manager's)."""


class Worker:
    def __init__(
        self,
        config: EdgeConfig,
        slot: ModelSlot,
        store: Store,
        alerts: AlertEngine,
        metrics: AgentMetrics,
        on_committed: Callable[[], None] = lambda: None,
        classify: Classifier = classify_batch,
    ) -> None:
        self.config = config
        self.classify = classify  # the release manager's, which adds shadow and rollback
        self.slot = slot
        self.store = store
        self.alerts = alerts
        self.metrics = metrics
        self.on_committed = on_committed
        self.queue: queue.Queue[IngestJob] = queue.Queue(maxsize=config.ingest.queue_files)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker", daemon=True)
        self._options = ReadOptions(retest=RetestPolicy(config.ingest.retest))
        self._settings = pipeline_settings(config.model, config.review)
        self._store_full_raised = False
        self._store_ms = 1.0
        self._full_checked = 0.0
        self.last_result_time: datetime | None = None
        self.busy = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, then tell queued jobs they were not started."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            self._finish(
                job, JobOutcome(JobStatus.SHUTDOWN, "shutting_down", "the agent is stopping")
            )

    def submit(self, job: IngestJob, timeout: float | None = None) -> None:
        """Queue a job (blocks while the queue is full; queue.Full after ``timeout``)."""
        if self._stop.is_set():
            raise queue.Full
        size = len(job.content) if job.content is not None else 0
        job.span = observe.start_job(job, size)
        self.queue.put(job, timeout=timeout)
        with observe.file_scope(job):
            log.info("%s file %s queued (%d bytes)", job.origin, job.name, size)
        self.metrics.queue_depth.set(self.queue.qsize())

    @property
    def accepting(self) -> bool:
        """False while stopping or while the store is full (checked again every few seconds)."""
        if self.store.full and time.monotonic() - self._full_checked > 2.0:
            self._full_checked = time.monotonic()
            self.store.ensure_room(0)
        return not self._stop.is_set() and not self.store.full

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.busy = True
            jobs = [first]
            try:
                jobs = self._gather(first)
                self._process(jobs)
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):
                    log.error("the disk is full: %s", exc)
                    self.store.full = True
                    self._pause(jobs)
                else:  # e.g. "database is locked": nothing was committed; the files are retried
                    log.error(
                        "the edge database refused the batch (%s); the files are retried", exc
                    )
                    for job in jobs:
                        self._finish(
                            job,
                            JobOutcome(JobStatus.PAUSED, "internal", f"edge database error: {exc}"),
                        )
            except Exception as exc:  # a bug must not kill the agent: the jobs are retried
                log.exception("processing failed; the jobs stay unprocessed")
                for job in jobs:
                    self._finish(
                        job, JobOutcome(JobStatus.PAUSED, "internal", f"internal error: {exc}")
                    )
            finally:
                self.busy = False
                self.metrics.queue_depth.set(self.queue.qsize())

    def _gather(self, first: IngestJob) -> list[IngestJob]:
        settings = self.config.model
        jobs = [first]
        seen = {first.digest}
        self._parse(first)
        deadline = time.perf_counter() + settings.max_wait_ms / 1000.0
        wafers = len(first.prepared)
        while wafers < settings.max_batch and not self._stop.is_set():
            # queued jobs join the batch at once; waiting for more lasts until the deadline
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            jobs.append(job)
            if job.digest in seen:  # the same bytes twice in one batch: the first one counts
                job.outcome = JobOutcome(JobStatus.DUPLICATE)
                continue
            seen.add(job.digest)
            self._parse(job)
            wafers += len(job.prepared)
        return jobs

    def _parse(self, job: IngestJob) -> None:
        with observe.file_scope(job), observe.parse_span(job):
            self._parse_file(job)
            observe.parsed(job)

    def _parse_file(self, job: IngestJob) -> None:
        known = self.store.file_record(job.digest)
        if known is not None:
            job.outcome = JobOutcome(JobStatus.DUPLICATE, record=known)
            return
        encoding = self.slot.current.bundle.encoding
        outcome = JobOutcome(JobStatus.ACCEPTED)
        try:
            for wafer, parse_ms in read_wafers(job.source(), self._options, job.format_hint):
                index = wafer.provenance.wafer_index
                pending = WaferOutcome(index, result_id=new_message_id())
                pending.trace = wt = observe.WaferTrace(job, pending.result_id, wafer)
                try:
                    with wt.stage("edge.validate"):
                        item = prepare(wafer, encoding, parse_ms)
                except WaferRejectedError as exc:
                    wt.log(log, logging.WARNING, "wafer refused: %s: %s", exc.code, exc)
                    wt.end(f"{exc.code}: {exc}")
                    outcome.wafers.append(WaferOutcome(index, None, exc.code, str(exc)))
                    continue
                wt.log(log, logging.DEBUG, "wafer parsed (%d dies)", wafer.die_count)
                outcome.wafers.append(pending)
                job.prepared.append((item, pending))
        except FormatError as exc:
            observe.drop_prepared(job, "format_error")
            code = format_error_code(exc)
            outcome = JobOutcome(JobStatus.REJECTED, code, str(exc), str(exc.location))
        except (WaferscopeError, OSError) as exc:
            observe.drop_prepared(job, "format_error")
            outcome = JobOutcome(JobStatus.REJECTED, "format_error", f"{job.name}: {exc}")
        if outcome.status is JobStatus.ACCEPTED and not job.prepared:
            reasons = (
                "; ".join(w.error_message for w in outcome.wafers) or "the file holds no wafers"
            )
            outcome = JobOutcome(
                JobStatus.REJECTED, "invalid_wafer", reasons, wafers=outcome.wafers
            )
        elif any(w.error_code for w in outcome.wafers):
            outcome.status = JobStatus.PARTIAL
        job.outcome = outcome

    # ------------------------------------------------------------------ one batch
    def _process(self, jobs: list[IngestJob]) -> None:
        model = self.slot.current
        cfg = self.config
        fresh = [
            j for j in jobs if j.outcome is not None and j.outcome.status is not JobStatus.DUPLICATE
        ]
        prepared = [(job, item, pending) for job in fresh for item, pending in job.prepared]
        for start in range(0, len(prepared), cfg.model.max_batch):
            chunk = prepared[start : start + cfg.model.max_batch]
            began_ns = time.time_ns()
            classified = self.classify([p[1] for p in chunk], model, self._settings)
            ended_ns = time.time_ns()
            for (job, _, pending), item in zip(chunk, classified, strict=True):
                item.times.store_ms = self._store_ms
                pending.result = wafer_result(
                    item,
                    result_id=pending.result_id,
                    device_id=cfg.device_id,
                    sequence=0,  # the store numbers results when it commits them
                    correlation_id=job.correlation_id or job.digest,
                    received=job.received,
                    tester_id=job.tester_id or cfg.tester_id,
                    extra=job.extra,
                    include_embedding=cfg.mqtt.include_embedding,
                )
                if not cfg.store.keep_heatmaps and not cfg.mqtt.include_heatmap:
                    pending.result.ClearField("heatmap")
                if pending.trace is not None:
                    pending.trace.classified(pending.result, began_ns, ended_ns, len(chunk))
        results = [
            (job.digest, w.result)
            for job in fresh
            for w in (job.outcome.wafers if job.outcome else [])
            if w.result is not None
        ]
        needed = estimated_bytes(r.ByteSize() for _, r in results) + 512 * len(fresh)
        if results and not self.store.ensure_room(needed):
            self._pause(jobs)
            return
        self._store_full_raised = False
        alerts: list[alert_pb2.Alert] = []
        records: list[FileRecord] = []
        traces = {w.result_id: w.trace for job in fresh for _, w in job.prepared if w.trace}
        traceparents = {rid: t.traceparent for rid, t in traces.items() if t.traceparent}
        for job in fresh:
            assert job.outcome is not None
            records.append(self._record(job))
            if job.outcome.status is JobStatus.REJECTED:
                alerts += self.alerts.on_rejected_file(
                    job.name,
                    job.outcome.error_code,
                    job.outcome.error_message,
                    job.tester_id or cfg.tester_id or "",
                )
        for _, result in results:
            raised = self.alerts.on_result(result)
            if result.result_id in traceparents:  # an alert belongs to its wafer's trace
                traceparents.update((a.alert_id, traceparents[result.result_id]) for a in raised)
            alerts += raised
        began = time.perf_counter()
        began_ns = time.time_ns()
        self.store.commit(records, results, alerts, traceparents)
        store_ms = (time.perf_counter() - began) * 1000.0
        ended_ns = time.time_ns()
        for _, result in results:
            if (wt := traces.get(result.result_id)) is not None:
                wt.committed(result, began_ns, ended_ns, len(results))
        if results:  # the next results carry this batch's measured store time per wafer
            self._store_ms = 0.8 * self._store_ms + 0.2 * store_ms / len(results)
        self._observe(fresh, results, alerts, store_ms)
        if results or alerts:
            self.on_committed()
        for job in jobs:
            assert job.outcome is not None
            if job.outcome.status is JobStatus.DUPLICATE and job.outcome.record is None:
                job.outcome.record = self.store.file_record(job.digest)
            self._finish(job, job.outcome)

    def _record(self, job: IngestJob) -> FileRecord:
        assert job.outcome is not None
        o = job.outcome
        accepted = sum(1 for w in o.wafers if w.result is not None)
        return FileRecord(
            digest=job.digest,
            name=job.name,
            origin=job.origin,
            state="rejected" if o.status is JobStatus.REJECTED else "accepted",
            wafer_count=accepted,
            rejected_count=sum(1 for w in o.wafers if w.error_code),
            error_code=o.error_code,
            error_message=o.error_message
            or "; ".join(w.error_message for w in o.wafers if w.error_code),
            correlation_id=job.correlation_id,
        )

    def _pause(self, jobs: list[IngestJob]) -> None:
        if not self._store_full_raised:
            self._store_full_raised = True
            alert = self.alerts.make_alert(
                rule_id="store-full",
                kind="device",
                severity="critical",
                title="local store full: ingest paused",
                message=f"The edge database reached its {self.store.max_bytes:,}-byte bound and "
                "holds only unpublished results; ingest waits until the hub link drains it.",
                dedup_key=f"store-full:{self.config.device_id}",
            )
            self.store.add_alerts([alert])
            self.metrics.alerts.labels(rule="store-full").inc()
            self.on_committed()
            log.error("store full (%d bytes used): ingest paused", self.store.used_bytes())
        for job in jobs:
            self._finish(job, JobOutcome(JobStatus.PAUSED, "queue_full", "the edge store is full"))

    def _finish(self, job: IngestJob, outcome: JobOutcome) -> None:
        observe.drop_prepared(job, outcome.status)  # (committed wafers' spans have ended)
        job.outcome = outcome
        with observe.file_scope(job):
            if job.on_done is not None:
                try:
                    job.on_done(job, outcome)
                except Exception:
                    log.exception("completing job %s failed", job.name)
        observe.end_job(job, outcome)

    def _observe(
        self,
        jobs: list[IngestJob],
        results: list[tuple[str, result_pb2.WaferResult]],
        alerts: list[alert_pb2.Alert],
        store_ms: float,
    ) -> None:
        m = self.metrics
        per_wafer = store_ms / max(1, len(results))
        now = time.perf_counter()
        for job in jobs:
            assert job.outcome is not None
            m.files.labels(origin=job.origin, status=job.outcome.status).inc()
        by_digest = {j.digest: j for j in jobs}
        for digest, r in results:
            t = r.timings
            m.observe_wafer(r, t, per_wafer, (now - by_digest[digest].received_mono) * 1000.0)
        for a in alerts:
            m.alerts.labels(rule=a.rule_id).inc()
        if results:
            self.last_result_time = datetime.now(UTC)
