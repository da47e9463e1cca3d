"""The MQTT side of the ingest: paho-mqtt 2, MQTT v5, QoS 1, persistent session, manual acks.

The hub subscribes with ``topics.hub_subscriptions(group=...)``: results, alerts, births and
deploy acks through an MQTT v5 shared subscription (several workers split them), status on a plain
subscription (retained statuses reach every worker). Messages are acknowledged (PUBACK) only after
the database transaction that holds them has committed, in the order they arrived, so a hub killed
at any moment loses nothing: the broker redelivers every unacknowledged message to the persistent
session, and the store ignores ids it already has.

Packet ids belong to the session, not to the connection: after a reconnect that finds the session
present, a message received on the old connection is still acknowledged with its id once
committed, and a redelivered copy (same id) is counted, so the id is acknowledged once, after every
copy in hand has been committed (the broker reuses an id only after its PUBACK). When the broker
has lost the session (``session present`` is 0, e.g. it expired), acknowledgements of messages
from the old session are dropped: their ids mean nothing any more.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from waferscope.hub.config import IngestConfig, MqttConfig
from waferscope.hub.ingest.handler import BatchWriter, Incoming
from waferscope.hub.ingest.observe import traceparent_of
from waferscope.hub.metrics import HubMetrics
from waferscope.hub.store.ingest import Batch
from waferscope.protocols import topics

log = logging.getLogger("waferscope.hub.ingest")


@dataclass(frozen=True, slots=True)
class _Received:
    item: Incoming
    mid: int
    qos: int
    session: int  # which broker session delivered it


def client_id_for(config: MqttConfig, worker: int) -> str:
    return config.client_id if worker == 0 else f"{config.client_id}-{worker}"


def make_client(config: MqttConfig, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    password = None
    if config.password is not None:
        password = config.password.get_secret_value()
    elif config.password_file is not None:
        password = config.password_file.read_text(encoding="utf-8").strip()
    if config.username:
        client.username_pw_set(config.username, password)
    if config.tls.enabled:
        client.tls_set(
            ca_certs=str(config.tls.ca_file) if config.tls.ca_file else None,
            certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
            keyfile=str(config.tls.key_file) if config.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(config.tls.insecure)
    client.reconnect_delay_set(
        max(1, int(config.reconnect_min_s)), max(1, int(config.reconnect_max_s))
    )
    return client


class MqttIngest:
    """One ingest worker: an MQTT client and a writer thread committing batches."""

    def __init__(
        self,
        mqtt_config: MqttConfig,
        ingest_config: IngestConfig,
        writer: BatchWriter,
        metrics: HubMetrics,
        *,
        worker: int = 0,
        group: str | None = None,
    ) -> None:
        self.config = mqtt_config
        self.group = group
        self.ingest = ingest_config
        self.writer = writer
        self.metrics = metrics
        self.client_id = client_id_for(mqtt_config, worker)
        self._queue: queue.Queue[_Received] = queue.Queue()
        self._session = 0
        self._copies: dict[int, int] = {}  # packet id -> copies received and not yet committed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = make_client(mqtt_config, self.client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the hub's connection: %s", rc)
            return
        with self._lock:
            if not getattr(flags, "session_present", False):
                self._session += 1  # a new session: ids of the old one are void
                self._copies.clear()
        self.connected.set()
        self.metrics.connected.set(1)
        filters = topics.hub_subscriptions(group=self.group)
        opts = SubscribeOptions(qos=1)
        client.subscribe([(f, opts) for f in filters])
        log.info(
            "connected to %s:%s as %s (session present: %s); subscribing to %s",
            self.config.host,
            self.config.port,
            self.client_id,
            getattr(flags, "session_present", "?"),
            ", ".join(filters),
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        refused = [str(rc) for rc in rcs if rc.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
        else:
            self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.connected.set(0)
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.qos > 0:
                self._copies[msg.mid] = self._copies.get(msg.mid, 0) + 1
            session = self._session
        item = Incoming(
            msg.topic,
            bytes(msg.payload),
            traceparent_of(msg.properties),
            time.time_ns(),
            getattr(msg.properties, "ContentType", "") or "",
        )
        self._queue.put(_Received(item, msg.mid, msg.qos, session))

    # ------------------------------------------------------------------ writer
    def _run(self) -> None:
        """Decode each message as it arrives; commit every ``batch_wait_ms`` (or ``batch_max``).

        Decoding while the batch fills (rather than after) keeps a message's wait to one commit
        interval plus the commit itself.
        """
        wait_s = self.ingest.batch_wait_ms / 1000
        stop = self._stop.is_set
        while not stop():
            batch, taken = Batch(), []
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            started = time.perf_counter()
            deadline = time.monotonic() + wait_s
            item: _Received | None = first
            while item is not None:
                if not self.writer.add_retrying(batch, item.item, stop=stop):
                    return  # stopped: nothing acknowledged, the broker redelivers
                taken.append(item)
                if len(taken) >= self.ingest.batch_max:
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    item = None
            self.metrics.queue_depth.set(self._queue.qsize())
            if not self.writer.commit(batch, stop=stop):
                return  # not committed: the broker redelivers them to the next session
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(taken))
            self._ack(taken)

    def _ack(self, batch: list[_Received]) -> None:
        """PUBACK, in arrival order, every id whose copies in hand are all committed."""
        due: list[tuple[int, int]] = []
        with self._lock:
            for r in batch:
                if r.qos == 0 or r.session != self._session:
                    continue
                left = self._copies.get(r.mid, 1) - 1
                if left > 0:
                    self._copies[r.mid] = left
                else:
                    self._copies.pop(r.mid, None)
                    due.append((r.mid, r.qos))
        for mid, qos in due:
            self.client.ack(mid, qos)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self.client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hub-ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge the batch in hand, then disconnect.

        Messages received and not yet committed stay unacknowledged: the broker keeps them in the
        persistent session and delivers them again when the hub comes back.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self.metrics.connected.set(0)

    @property
    def pending(self) -> int:
        return self._queue.qsize()
