"""The TesterIngest gRPC service (protocols' ingest.proto) for testers that push their files.

Transport problems are gRPC status codes (message too large: RESOURCE_EXHAUSTED, set by the
server's message limit). Content problems are answered in the ``SubmitResponse`` so a stream
survives a bad file: unknown format, truncated file, digest or size mismatch, chunks out of
order, an upload over ``max_upload_bytes``, a full store (``queue_full``). A call is answered
once its wafers are classified *and stored*, so an ACCEPTED file survives a crash of the agent.
Submitting the same bytes again answers with the stored results (no second classification).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc

from waferscope.edge.config import GrpcConfig, GrpcTlsConfig
from waferscope.edge.jobs import IngestJob, JobOutcome, JobStatus
from waferscope.edge.store import Store
from waferscope.edge.worker import Worker
from waferscope.protocols.pb import ingest_pb2, ingest_pb2_grpc, result_pb2

log = logging.getLogger(__name__)
Status = ingest_pb2.SubmitStatus


def _error(code: str, message: str, location: str = "") -> ingest_pb2.IngestError:
    return ingest_pb2.IngestError(code=code, message=message, location=location)


def _rejected(
    name: str, corr: str, digest: str, code: str, message: str
) -> ingest_pb2.SubmitResponse:
    return ingest_pb2.SubmitResponse(
        correlation_id=corr,
        file_name=name,
        sha256=digest,
        status=ingest_pb2.SUBMIT_STATUS_REJECTED,
        error=_error(code, message),
    )


class TesterIngestService(ingest_pb2_grpc.TesterIngestServicer):
    def __init__(
        self, worker: Worker, store: Store, config: GrpcConfig, tester_id: str | None
    ) -> None:
        self.worker = worker
        self.store = store
        self.config = config
        self.tester_id = tester_id

    # ------------------------------------------------------------------ the three calls
    def Submit(  # noqa: N802 - the generated servicer's names
        self, request: ingest_pb2.WaferFile, context: grpc.ServicerContext
    ) -> ingest_pb2.SubmitResponse:
        return self._handle(request)

    def Upload(  # noqa: N802 - the generated servicer's names
        self, request_iterator: Iterator[ingest_pb2.UploadRequest], context: grpc.ServicerContext
    ) -> ingest_pb2.SubmitResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            return _rejected(
                "", "", "", "missing_header", "an upload must start with an UploadHeader"
            )
        h = first.header
        name = _base(h.file_name)
        if h.total_bytes > self.config.max_upload_bytes:
            return _rejected(
                name,
                h.correlation_id,
                "",
                "too_large",
                f"{name}: {h.total_bytes:,} bytes is more than the "
                f"{self.config.max_upload_bytes:,}-byte upload limit",
            )
        data = bytearray()
        for req in request_iterator:
            if req.WhichOneof("part") != "chunk":
                return _rejected(
                    name,
                    h.correlation_id,
                    "",
                    "out_of_order_chunk",
                    f"{name}: a second header inside the upload",
                )
            chunk = req.chunk
            if chunk.offset != len(data):
                return _rejected(
                    name,
                    h.correlation_id,
                    "",
                    "out_of_order_chunk",
                    f"{name}: chunk at offset {chunk.offset}, expected {len(data)}",
                )
            if len(data) + len(chunk.data) > self.config.max_upload_bytes:
                return _rejected(
                    name,
                    h.correlation_id,
                    "",
                    "too_large",
                    f"{name}: more than the {self.config.max_upload_bytes:,}-byte upload limit",
                )
            data += chunk.data
        if h.total_bytes and len(data) != h.total_bytes:
            return _rejected(
                name,
                h.correlation_id,
                "",
                "size_mismatch",
                f"{name}: received {len(data):,} bytes, the header announced {h.total_bytes:,}",
            )
        request = ingest_pb2.WaferFile(
            file_name=name,
            content=bytes(data),
            format_hint=h.format_hint,
            tester_id=h.tester_id,
            correlation_id=h.correlation_id,
            sha256=h.sha256,
            options=h.options,
            metadata=h.metadata,
        )
        return self._handle(request)

    def SubmitStream(  # noqa: N802 - the generated servicer's names
        self, request_iterator: Iterator[ingest_pb2.WaferFile], context: grpc.ServicerContext
    ) -> Iterator[ingest_pb2.SubmitResponse]:
        """Files are queued as they arrive; each answer is sent as soon as its file is stored."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def read() -> None:
            count = 0
            try:
                for request in request_iterator:
                    count += 1
                    self._start(request).add_done_callback(
                        lambda fut: events.put(("answer", fut.result()))
                    )
            finally:
                events.put(("end", count))

        threading.Thread(target=read, name="ingest-stream", daemon=True).start()
        sent, total = 0, None
        while total is None or sent < total:
            try:
                kind, value = events.get(timeout=self.config.response_timeout_s)
            except queue.Empty:
                return  # the client stopped sending and nothing is pending any more
            if kind == "end":
                total = value
                continue
            sent += 1
            yield value

    # ------------------------------------------------------------------ shared path
    def _handle(self, request: ingest_pb2.WaferFile) -> ingest_pb2.SubmitResponse:
        return self._wait(self._start(request))

    def _wait(self, fut: Future[ingest_pb2.SubmitResponse]) -> ingest_pb2.SubmitResponse:
        try:
            return fut.result(timeout=self.config.response_timeout_s)
        except FutureTimeout:
            return _rejected(
                "",
                "",
                "",
                "timeout",
                "classification did not finish in time; "
                "submit again (a file already stored is answered from the store)",
            )

    def _start(self, request: ingest_pb2.WaferFile) -> Future[ingest_pb2.SubmitResponse]:
        fut: Future[ingest_pb2.SubmitResponse] = Future()
        name = _base(request.file_name) or "unnamed"
        content = request.content
        digest = hashlib.sha256(content).hexdigest()
        corr = request.correlation_id
        problem = None
        if not content:
            problem = ("empty", f"{name}: the file is empty")
        elif request.sha256 and request.sha256.lower() != digest:
            problem = (
                "digest_mismatch",
                f"{name}: sha256 {digest[:12]}… does not match the declared {request.sha256[:12]}…",
            )
        elif not self.worker.accepting:
            problem = ("queue_full", "the edge store is full or the agent is stopping; retry later")
        if problem is not None:
            fut.set_result(_rejected(name, corr, digest, *problem))
            return fut

        def done(job: IngestJob, outcome: JobOutcome) -> None:
            fut.set_result(self._response(job, outcome, request.options.include_results))

        job = IngestJob(
            name=name,
            digest=digest,
            origin="grpc",
            content=content,
            correlation_id=corr,
            tester_id=request.tester_id or self.tester_id,
            format_hint=request.format_hint or None,
            extra=dict(request.metadata),
            on_done=done,
        )
        try:
            self.worker.submit(job, timeout=5.0)
        except queue.Full:
            fut.set_result(
                _rejected(name, corr, digest, "queue_full", "the ingest queue is full; retry later")
            )
        return fut

    def _response(
        self, job: IngestJob, outcome: JobOutcome, include: bool
    ) -> ingest_pb2.SubmitResponse:
        response = ingest_pb2.SubmitResponse(
            correlation_id=job.correlation_id, file_name=job.name, sha256=job.digest
        )
        if outcome.status in (JobStatus.PAUSED, JobStatus.SHUTDOWN):
            # paused: the store is full ("queue_full") or the batch failed ("internal"); both are
            # worth a retry later, but the tester is told which one it was
            code = (
                (outcome.error_code or "queue_full")
                if outcome.status is JobStatus.PAUSED
                else "shutting_down"
            )
            return _rejected(job.name, job.correlation_id, job.digest, code, outcome.error_message)
        if outcome.status is JobStatus.DUPLICATE:
            results = self.store.results_of_file(job.digest)
            record = outcome.record
            if record is not None and record.state == "rejected":
                response.status = ingest_pb2.SUBMIT_STATUS_REJECTED
                response.error.CopyFrom(_error(record.error_code, record.error_message))
                return response
            response.status = ingest_pb2.SUBMIT_STATUS_ACCEPTED
            for r in results:
                response.wafers.append(self._outcome(r, include))
            return response
        if outcome.status is JobStatus.REJECTED:
            response.status = ingest_pb2.SUBMIT_STATUS_REJECTED
            response.error.CopyFrom(
                _error(outcome.error_code, outcome.error_message, outcome.location)
            )
            return response
        response.status = (
            ingest_pb2.SUBMIT_STATUS_PARTIAL
            if outcome.status is JobStatus.PARTIAL
            else ingest_pb2.SUBMIT_STATUS_ACCEPTED
        )
        for w in outcome.wafers:
            if w.result is not None:
                response.wafers.append(self._outcome(w.result, include))
            else:
                response.wafers.append(
                    ingest_pb2.WaferOutcome(
                        wafer_index=w.index,
                        status=ingest_pb2.WAFER_OUTCOME_STATUS_REJECTED,
                        error=_error(w.error_code, w.error_message),
                    )
                )
        return response

    @staticmethod
    def _outcome(result: result_pb2.WaferResult, include: bool) -> ingest_pb2.WaferOutcome:
        out = ingest_pb2.WaferOutcome(
            wafer_index=result.wafer.wafer_index,
            wafer=result.wafer,
            status=ingest_pb2.WAFER_OUTCOME_STATUS_CLASSIFIED,
            result_id=result.result_id,
            pattern=result.pattern.name,
            confidence=result.confidence,
            review_required=result.review_required,
        )
        if include:
            out.result.CopyFrom(result)
        return out


def _base(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _pem(tls: GrpcTlsConfig, option: str) -> bytes:
    path = getattr(tls, option)
    try:
        return bytes(path.read_bytes())
    except OSError as exc:
        raise OSError(exc.errno, f"ingest.grpc.tls.{option}: cannot read {path}") from None


def server_credentials(config: GrpcConfig) -> grpc.ServerCredentials:
    """TLS credentials from ``ingest.grpc.tls``; with ``client_ca_file`` clients must present a
    certificate it signed (mutual TLS)."""
    tls = config.tls
    pair = [(_pem(tls, "key_file"), _pem(tls, "cert_file"))]
    if tls.client_ca_file is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(
        pair, root_certificates=_pem(tls, "client_ca_file"), require_client_auth=True
    )


class IngestServer:
    """A gRPC server hosting TesterIngest on ``config.listen``."""

    def __init__(self, service: TesterIngestService, config: GrpcConfig) -> None:
        limit = config.max_message_bytes + 1024 * 1024
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        ingest_pb2_grpc.add_TesterIngestServicer_to_server(service, self._server)
        if config.tls.enabled:
            self.port = self._server.add_secure_port(config.listen, server_credentials(config))
        else:
            self.port = self._server.add_insecure_port(config.listen)
        self.tls = config.tls.enabled
        if not self.port:
            raise OSError(f"cannot listen on {config.listen}")
        host = config.listen.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"

    def start(self) -> None:
        self._server.start()
        log.info("TesterIngest listening on %s%s", self.address, " (TLS)" if self.tls else "")

    def stop(self, grace: float = 5.0) -> None:
        self._server.stop(grace).wait(grace + 1)
