"""From received MQTT messages to one committed database transaction (no MQTT in here).

:class:`BatchWriter` takes a list of raw messages (topic, payload), decodes each through
``protocols.messages.decode_topic``, turns it into rows, and commits the batch. Anything that
cannot be used (a topic that is no waferscope topic, a payload that does not decode, a map that
does not fit its shape) becomes a dead letter: counted, logged with its device id, and stored,
never an exception that stops the ingest. The MQTT side acknowledges a message to the broker only
after the transaction holding it has committed (see ``mqtt.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from waferscope.hub.blobs import BlobError, BlobStore
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.ingest import observe
from waferscope.hub.mapcodec import MapCodecError, check_map
from waferscope.hub.metrics import HubMetrics
from waferscope.hub.review_policy import QueueSelector
from waferscope.hub.store.alerts import enqueue_deliveries
from waferscope.hub.store.ingest import (
    Batch,
    BatchOutcome,
    BlobKeys,
    ResultRows,
    alert_row,
    dead_letter_row,
    heatmap_payload,
    map_payload,
    result_rows,
    write_batch,
)
from waferscope.protocols.errors import TopicError
from waferscope.protocols.messages import MessageError, decode_topic
from waferscope.protocols.pb.alert_pb2 import Alert
from waferscope.protocols.pb.device_pb2 import DeviceBirth, DeviceStatus
from waferscope.protocols.pb.result_pb2 import WaferResult
from waferscope.protocols.topics import TopicKind, parse

log = logging.getLogger("waferscope.hub.ingest")

BAD_INPUT = (TopicError, MessageError, MapCodecError, ValueError, OverflowError)


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    traceparent: str = ""  # the W3C trace context the edge sent with it (user property)
    received_ns: int = 0  # when it arrived (time.time_ns()), where known
    content_type: str = ""  # the MQTT v5 content type: binary protobuf or (default) JSON


def _kind_of(topic: str) -> str:
    """The kind level of a waferscope topic ("unknown" for anything else), for metrics."""
    try:
        return parse(topic).kind.value
    except TopicError:
        return "unknown"


def _device_of(topic: str) -> str:
    """The device level of a topic, if it has one (for dead-letter records)."""
    parts = topic.split("/")
    return parts[3][:64] if len(parts) == 5 else ""


def store_result_blobs(message: WaferResult, blobs: BlobStore) -> BlobKeys:
    """Write a result's map and heatmap to the blob store (content-addressed: a redelivery
    writes nothing new) and say where they lie."""
    map_bytes = map_payload(message)
    heat_bytes = heatmap_payload(message)
    return BlobKeys(
        map_blob=None if map_bytes is None else blobs.put("maps", map_bytes),
        heatmap_blob=None if heat_bytes is None else blobs.put("heatmaps", heat_bytes),
    )


def stored_result_rows(
    message: WaferResult,
    *,
    blobs: BlobStore,
    selector: QueueSelector,
    now: datetime,
    origin: str = "edge",
    store_embedding: bool = True,
) -> ResultRows:
    """A result's rows, its blobs written and its review decided (by ``selector``) first."""
    return result_rows(
        message,
        now=now,
        blob_keys=store_result_blobs(message, blobs),
        queue_decision=selector.select(message),
        origin=origin,
        store_embedding=store_embedding,
    )


class BatchWriter:
    """Decodes, stores and commits batches; one per ingest worker thread."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        selector: QueueSelector,
        metrics: HubMetrics,
        *,
        channels: Sequence[tuple[str, str]] = (),
        store_embeddings: bool = True,
        dead_letter_bytes: int = 64 * 1024,
        on_commit: Callable[[BatchOutcome], None] | None = None,
        commit_log: Path | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.selector = selector
        self.metrics = metrics
        self.channels = list(channels)
        self.store_embeddings = store_embeddings
        self.dead_letter_bytes = dead_letter_bytes
        self.on_commit = on_commit
        self._commit_log = commit_log.open("a", encoding="ascii") if commit_log else None

    # ------------------------------------------------------------------ decode
    def _dead(self, batch: Batch, item: Incoming, reason: str, kind: str) -> None:
        device = _device_of(item.topic)
        self.metrics.malformed.labels(kind=kind).inc()
        log.warning("dead letter from device %r on %s: %s", device or "?", item.topic, reason)
        batch.dead_letters.append(
            dead_letter_row(
                item.topic,
                item.payload,
                reason,
                device,
                now=utcnow(),
                keep_bytes=self.dead_letter_bytes,
            )
        )

    def add(self, batch: Batch, item: Incoming) -> None:
        """Decode one message into ``batch`` (its blobs are written now).

        A message that cannot be used becomes a dead letter; an unreachable blob store raises
        :class:`~waferscope.hub.blobs.BlobError` or ``OSError`` (the caller retries).
        """
        now = utcnow()
        kind = _kind_of(item.topic)
        self.metrics.messages.labels(kind=kind).inc()
        seen = observe.Seen(item.topic, kind, item.traceparent, item.received_ns)
        try:
            with seen.decoding():
                self._add(batch, item, seen, kind, now)
        except (BlobError, OSError) as exc:  # this attempt failed: the caller tries again
            seen.failed(f"blob store unavailable: {exc}")
            seen.span.end()
            raise
        batch.observed.append(seen)

    def _add(
        self, batch: Batch, item: Incoming, seen: observe.Seen, kind: str, now: datetime
    ) -> None:
        try:
            address, message = decode_topic(item.topic, item.payload, item.content_type)
            seen.identify(message)
            seen.log(logging.DEBUG, "received %s from %s", kind, address.device_id)
            if address.kind is TopicKind.RESULT:
                assert isinstance(message, WaferResult)
                if message.HasField("map"):
                    check_map(message.map)  # refuse maps whose bytes do not fit
                batch.results.append(
                    stored_result_rows(
                        message,
                        blobs=self.blobs,
                        selector=self.selector,
                        now=now,
                        store_embedding=self.store_embeddings,
                    )
                )
            elif address.kind is TopicKind.ALERT:
                assert isinstance(message, Alert)
                batch.alerts.append(alert_row(message, now=now))
            elif address.kind is TopicKind.STATUS:
                assert isinstance(message, DeviceStatus)
                batch.statuses.append(message)
            elif address.kind is TopicKind.BIRTH:
                assert isinstance(message, DeviceBirth)
                batch.births.append(message)
            # deploy acks: counted; the rollout step of the model registry consumes them
        except BAD_INPUT as exc:
            if not seen.key:
                seen.guess(item.payload)
            seen.failed(str(exc))
            with seen.active():
                self._dead(batch, item, str(exc), kind)

    def add_retrying(
        self, batch: Batch, item: Incoming, *, stop: Callable[[], bool] = lambda: False
    ) -> bool:
        """:meth:`add`, waiting while the blob store is unavailable; False if stopped first."""
        delay = 0.2
        while True:
            try:
                self.add(batch, item)
                return True
            except (BlobError, OSError) as exc:
                log.warning("blob store unavailable (%s); retrying in %.1f s", exc, delay)
                if stop():
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def build(self, items: Sequence[Incoming]) -> Batch:
        batch = Batch()
        for item in items:
            self.add(batch, item)
        return batch

    # ------------------------------------------------------------------ commit
    def _commit(self, batch: Batch) -> BatchOutcome:
        with self.db.connect() as conn:
            outcome = write_batch(conn, batch)
            if outcome.new_alerts and self.channels:
                severities = {a["alert_id"]: str(a["severity"]) for a in batch.alerts}
                enqueue_deliveries(
                    conn, [(a, severities[a]) for a in sorted(outcome.new_alerts)], self.channels
                )
        return outcome

    def _commit_one_by_one(self, batch: Batch) -> BatchOutcome:
        """After a batch failed on its content: store what can be stored, dead-letter the rest."""
        total = BatchOutcome()
        singles: list[tuple[Batch, str]] = [
            (Batch(results=[r]), f"result {r.result_id}") for r in batch.results
        ]
        singles += [(Batch(alerts=[a]), f"alert {a['alert_id']}") for a in batch.alerts]
        singles += [(Batch(statuses=[s]), f"status of {s.device_id}") for s in batch.statuses]
        singles += [(Batch(births=[b]), f"birth of {b.device_id}") for b in batch.births]
        singles.append((Batch(dead_letters=batch.dead_letters), "dead letters"))
        for single, what in singles:
            try:
                out = self._commit(single)
            except IntegrityError as exc:
                log.error("cannot store %s: %s", what, exc.orig)
                self.metrics.malformed.labels(kind="store").inc()
                continue
            total.new_results |= out.new_results
            total.new_alerts |= out.new_alerts
            total.duplicates += out.duplicates
        return total

    def commit(self, batch: Batch, *, stop: Callable[[], bool] = lambda: False) -> bool:
        """Commit a batch, retrying while the database is unavailable; False if stopped first."""
        began_ns = time.time_ns()
        delay = 0.2
        while True:
            try:
                try:
                    outcome = self._commit(batch)
                except IntegrityError:
                    outcome = self._commit_one_by_one(batch)
                ended_ns = time.time_ns()
                break
            except (OperationalError, DBAPIError) as exc:
                self.metrics.db_errors.inc()
                log.warning("ingest commit failed (%s); retrying in %.1f s", exc.orig, delay)
                if stop():
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self._commit_log is not None:
            stamp = f"{time.time():.6f}"
            self._commit_log.writelines(f"{rid} {stamp}\n" for rid in outcome.new_results)
            self._commit_log.flush()
        new = {r.result_id: r.result["classified_time"] for r in batch.results}
        self.metrics.observe_ingest_lag(
            [new[rid] for rid in outcome.new_results if rid in new], utcnow()
        )
        self.metrics.stored.labels(kind="result").inc(len(outcome.new_results))
        self.metrics.stored.labels(kind="alert").inc(len(outcome.new_alerts))
        self.metrics.duplicates.inc(outcome.duplicates)
        if self.on_commit is not None:
            try:
                self.on_commit(outcome)
            except Exception:  # a listener must never stop the ingest
                log.exception("post-commit listener failed")
        observe.committed(batch.observed, outcome, began_ns, ended_ns)
        return True

    def handle(self, items: Sequence[Incoming], **kwargs: Any) -> bool:
        """Decode and commit; True once committed (then the messages may be acknowledged)."""
        started = time.perf_counter()
        batch = Batch()
        for item in items:
            if not self.add_retrying(batch, item, **kwargs):
                return False
        ok = self.commit(batch, **kwargs)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(items))
        return ok
