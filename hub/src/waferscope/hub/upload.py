"""Wafer files uploaded by reviewers (web form or API): parsed, checked and stored like results.

The file is read through ``protocols.formats.read_maps`` (every format protocols knows, detected
by content), each wafer is normalised to the canonical orientation and checked with
``protocols.quality``, and its map, counts and findings are stored as a result whose origin is
``upload`` and that enters the review queue.

**Classification.** A :class:`WaferClassifier` — an interface with one method — fills in the
prediction. :class:`EngineClassifier` runs the same pipeline as an edge (the shared inference core
of ``protocols.inference``: encode, INT8 engine on onnxruntime, Grad-CAM, hot regions, routing)
with the hub's copy of the engine (``engine.bundle``); without a bundle,
:class:`UnclassifiedPipeline` leaves the prediction empty (confidence 0, so the wafer is queued
first for a human decision).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from waferscope.hub.blobs import BlobStore
from waferscope.hub.config import EngineConfig, ReviewConfig
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.ingest.handler import stored_result_rows
from waferscope.hub.review_policy import UPLOAD as UPLOAD_REASON
from waferscope.hub.review_policy import QueueSelector
from waferscope.hub.store.audit import audit
from waferscope.hub.store.ingest import Batch, write_batch
from waferscope.protocols import messages, quality
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.formats import read_maps
from waferscope.protocols.formats.base import Source
from waferscope.protocols.normalize import normalize
from waferscope.protocols.pb import common_pb2, result_pb2
from waferscope.protocols.pb.result_pb2 import WaferResult
from waferscope.protocols.wafermap import WaferMap

UPLOAD_DEVICE = "hub-upload"
"""The device id uploads are stored under (a valid topic id, never an edge's)."""


class UploadError(WaferscopeError):
    """The uploaded file cannot be used (unreadable, no wafers, too large)."""


class WaferClassifier(Protocol):
    """Fills in the prediction of wafers the hub received directly."""

    def classify(self, wafers: Sequence[WaferMap], results: Sequence[WaferResult]) -> None:
        """Set pattern, root cause, confidence, model version, heatmap, ... on each result.

        ``results[i]`` belongs to ``wafers[i]`` and already holds identity, map, counts and quality
        findings; the method changes the results in place.
        """
        ...


class UnclassifiedPipeline:
    """The default classifier: no engine in the hub yet, so the wafer waits for a human."""

    def classify(self, wafers: Sequence[WaferMap], results: Sequence[WaferResult]) -> None:
        for result in results:
            result.review_required = True
            result.review_detail = "uploaded on the hub; no engine classified it"


class EngineClassifier:
    """Uploads classified like on an edge, with the hub's copy of the engine.

    The model is loaded on first use (an ingest worker that never sees an upload never loads
    it). A wafer the pipeline refuses keeps its unclassified result, with the reason.
    """

    def __init__(self, config: EngineConfig, review: ReviewConfig) -> None:
        if config.bundle is None:
            raise UploadError("EngineClassifier needs engine.bundle")
        self.folder = config.bundle
        self.threads = config.threads
        self.review = review
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            from waferscope.protocols.inference import load_model

            self._model = load_model(self.folder, threads=self.threads, warmup_runs=1)
        return self._model

    def classify(self, wafers: Sequence[WaferMap], results: Sequence[WaferResult]) -> None:
        from waferscope.protocols.inference import (
            PipelineSettings,
            WaferRejectedError,
            classify_batches,
            wafer_result,
        )

        settings = PipelineSettings(default_threshold=self.review.threshold)
        rejected: dict[int, WaferRejectedError] = {}
        current = [-1]

        def pairs() -> Iterator[tuple[WaferMap, float]]:
            for i, wafer in enumerate(wafers):
                current[0] = i  # the pipeline prepares (or rejects) it before asking for more
                yield wafer, 0.0

        with self._lock:
            model = self._load()
            done = [
                item
                for chunk in classify_batches(
                    model, pairs(), settings, lambda exc: rejected.__setitem__(current[0], exc)
                )
                for item in chunk
            ]
        classified = [i for i in range(len(wafers)) if i not in rejected]
        now = datetime.now(UTC)
        for i, item in zip(classified, done, strict=True):
            base = results[i]
            message = wafer_result(
                item,
                result_id=base.result_id,
                device_id=base.device_id,
                sequence=0,
                correlation_id=base.correlation_id,
                received=now,
                tester_id=base.wafer.tester_id or None,
                include_embedding=True,
            )
            message.wafer.source_name = base.wafer.source_name
            message.wafer.wafer_index = base.wafer.wafer_index
            base.CopyFrom(message)
        for i, exc in rejected.items():
            results[i].review_required = True
            results[i].review_detail = f"not classified: {exc}"


_SEVERITY = {
    "info": common_pb2.SEVERITY_INFO,
    "warning": common_pb2.SEVERITY_WARNING,
    "error": common_pb2.SEVERITY_ERROR,
}


def base_result(wafer: WaferMap, index: int, *, source_name: str, digest: str) -> WaferResult:
    """The identity, map, counts and quality findings of one uploaded wafer."""
    canonical = normalize(wafer)
    report = quality.check(wafer)
    info = wafer.info
    now = datetime.now(UTC)
    result = WaferResult(
        result_id=messages.new_message_id(),
        device_id=UPLOAD_DEVICE,
        correlation_id=digest[:64],
        wafer=common_pb2.WaferIdentity(
            lot_id=info.lot_id or "",
            wafer_id=info.wafer_id or "",
            tester_id=info.tester_id or "",
            source_name=source_name,
            source_format=wafer.provenance.format,
            wafer_index=index,
        ),
        die_count=wafer.die_count,
        pass_count=wafer.pass_count,
        fail_count=wafer.fail_count,
        yield_fraction=wafer.yield_fraction or 0.0,
        map=messages.compact_map(canonical),
        quality_score=report.score,
        review_reason=result_pb2.REVIEW_REASON_QUALITY
        if report.score < 0.5
        else result_pb2.REVIEW_REASON_UNSPECIFIED,
    )
    for f in report.findings:
        result.quality_findings.add(
            code=str(f.code),
            severity=_SEVERITY.get(str(f.severity), common_pb2.SEVERITY_UNSPECIFIED),
            message=f.message,
            count=f.count,
        )
    result.received_time.FromDatetime(now)
    result.classified_time.FromDatetime(now)
    return result


@dataclass(frozen=True, slots=True)
class ParsedUpload:
    wafers: list[WaferMap]
    results: list[WaferResult]
    digest: str


def parse_upload(
    data: bytes, name: str, classifier: WaferClassifier, *, max_wafers: int = 10_000
) -> ParsedUpload:
    """Read every wafer of an uploaded file and build its results (classified by the seam)."""
    if not data:
        raise UploadError(f"{name}: the file is empty")
    digest = hashlib.sha256(data).hexdigest()
    safe_name = name.replace("\\", "/").rsplit("/", 1)[-1][:255] or "upload"
    with Source.from_bytes(data, safe_name) as source:
        wafers = []
        for wafer in read_maps(source):
            wafers.append(wafer)
            if len(wafers) > max_wafers:
                raise UploadError(f"{safe_name}: more than {max_wafers} wafers in one file")
    if not wafers:
        raise UploadError(f"{safe_name}: no wafers found")
    results = [
        base_result(w, i, source_name=safe_name, digest=digest) for i, w in enumerate(wafers)
    ]
    classifier.classify(wafers, results)
    return ParsedUpload(wafers, results, digest)


def store_upload(
    db: Database,
    blobs: BlobStore,
    selector: QueueSelector,
    parsed: ParsedUpload,
    data: bytes,
    *,
    name: str,
    actor: str,
    remote_addr: str = "",
) -> list[str]:
    """Keep the file in the blob store and its wafers as results; returns their result ids."""
    file_key = blobs.put("uploads", data)
    now = utcnow()
    rows = [
        stored_result_rows(r, blobs=blobs, selector=selector, now=now, origin="upload")
        for r in parsed.results
    ]
    for r in rows:
        if r.queue is None:  # an upload is for a human to look at
            r.queue = {
                "result_id": r.result_id,
                "priority": 2.0 + (1.0 - float(r.result["confidence"])),
                "reason": UPLOAD_REASON,
                "state": "open",
                "enqueued_at": now,
            }
    with db.connect() as conn:
        write_batch(conn, Batch(results=rows), now=now)
    with db.session(write=True) as s:
        audit(
            s,
            actor,
            "upload",
            name,
            {"wafers": len(rows), "sha256": parsed.digest, "blob": file_key},
            remote_addr=remote_addr,
        )
    return [r.result_id for r in rows]
