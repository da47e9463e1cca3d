"""Sends reviewers' labels back to the edges that produced the wafers (``label`` topic, QoS 1).

:func:`waferscope.hub.store.review.submit_review` queues each label of an edge's wafer in
``label_dispatch`` inside the review's transaction; this publisher (hub worker 0) sends pending
rows in id order on ``waferscope/v1/<site>/<device>/label`` (QoS 1, not retained) and stamps
``sent_at`` only after the broker's PUBACK, so a hub or broker outage delays labels but never
loses one. The edge's persistent session keeps them while the edge is away; a label sent twice
(PUBACK lost) carries the same ``label_id`` and the edge stores it once.
"""

from __future__ import annotations

import logging
import threading

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select, update

from waferscope.hub.config import MqttConfig
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import LabelDispatch
from waferscope.hub.ingest.mqtt import make_client
from waferscope.protocols import messages, topics
from waferscope.protocols.pb import label_pb2

log = logging.getLogger("waferscope.hub.labels")


class LabelPublisher:
    """A thread with its own MQTT client that drains ``label_dispatch``."""

    def __init__(
        self, db: Database, config: MqttConfig, *, poll_s: float = 2.0, batch: int = 100
    ) -> None:
        self.db = db
        self.config = config
        self.poll_s = poll_s
        self.batch = batch
        self.wake = threading.Event()
        self.client = make_client(config, f"{config.client_id}-labels", manual_ack=False)
        self.client.on_connect = lambda c, u, f, rc, p: self.wake.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send_pending(self, timeout_s: float = 10.0) -> int:
        """Publish pending labels (oldest first); the number the broker acknowledged."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    LabelDispatch.id,
                    LabelDispatch.device_id,
                    LabelDispatch.site,
                    LabelDispatch.payload,
                )
                .where(LabelDispatch.sent_at.is_(None))
                .order_by(LabelDispatch.id)
                .limit(self.batch)
            ).all()
        sent: list[int] = []
        tried: list[int] = []
        for row_id, device_id, site, payload in rows:
            if not self.client.is_connected() or self._stop.is_set():
                break
            label = label_pb2.WaferLabel.FromString(payload)
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = messages.content_type(label)
            props.PayloadFormatIndicator = messages.PAYLOAD_FORMAT_UTF8
            info = self.client.publish(
                topics.label_topic(device_id, site=site),
                messages.encode(label),
                qos=topics.qos(topics.TopicKind.LABEL),
                retain=topics.is_retained(topics.TopicKind.LABEL),
                properties=props,
            )
            tried.append(row_id)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:  # not queued: disconnected meanwhile
                log.warning("label %s to %s not sent: %s", label.label_id, device_id, exc)
                break
            if info.is_published():
                sent.append(row_id)
        if tried:
            with self.db.session(write=True) as s:
                s.execute(
                    update(LabelDispatch)
                    .where(LabelDispatch.id.in_(tried))
                    .values(attempts=LabelDispatch.attempts + 1)
                )
                if sent:
                    s.execute(
                        update(LabelDispatch)
                        .where(LabelDispatch.id.in_(sent))
                        .values(sent_at=utcnow())
                    )
        if sent:
            log.info("sent %d labels to their edges", len(sent))
        return len(sent)

    def pending(self) -> int:
        with self.db.session() as s:
            return len(
                s.execute(select(LabelDispatch.id).where(LabelDispatch.sent_at.is_(None))).all()
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self.poll_s)
            self.wake.clear()
            if not self.client.is_connected():
                continue
            try:
                while self.send_pending() == self.batch:
                    pass
            except Exception:
                log.exception("sending labels failed; retrying in %.0f s", self.poll_s)

    def start(self) -> None:
        self.client.connect_async(
            self.config.host, self.config.port, keepalive=self.config.keepalive_s
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hub-label-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
