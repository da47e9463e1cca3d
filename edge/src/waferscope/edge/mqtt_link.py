"""The link to the hub: paho-mqtt 2.x, persistent session, outbox drained in order, QoS 1.

- MQTT v5, client id = device id (configurable), ``Clean Start = 0`` with a session expiry, so
  the broker keeps the session while the edge is away. TLS and user/password from the config.
- Last will: ``DeviceStatus`` OFFLINE / LAST_WILL, retained, on the status topic. Every
  connection gets a new ``connection_id``; the will is re-registered before each reconnect.
- On connect: ``DeviceBirth`` (not retained), then ``DeviceStatus`` ONLINE (retained); status
  again every ``heartbeat_s``.
- The drain thread hands outbox rows to paho in outbox order, at most ``max_inflight``
  unacknowledged. A row leaves the outbox only when its PUBACK arrives (``on_publish``). paho
  keeps unacknowledged messages across reconnects and resends them (DUP) first, so order holds;
  after a restart the whole outbox is sent again from the start. Message ids (``resultId``,
  ``alertId``) never change, so the hub drops repeats.
- Reconnect: paho's loop with exponential backoff between ``reconnect_min_s`` and
  ``reconnect_max_s``.
- Events are never retained; only status is.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from waferscope.edge import observe
from waferscope.edge.config import MqttConfig
from waferscope.edge.metrics import AgentMetrics
from waferscope.edge.store import OutboxRow, Store
from waferscope.protocols import messages, topics, tracing
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import (
    alert_pb2,
    deploy_pb2,
    device_pb2,
    label_pb2,
    release_pb2,
    result_pb2,
)

log = logging.getLogger(__name__)
ACK_BATCH = 32
ACK_WAIT_S = 0.05
# PUBACK reason 16 ("no matching subscribers") is a success code in MQTT v5, but it means the
# hub did not get the message (e.g. a restarted broker before the hub subscribed again): such
# messages stay in the outbox and are sent again, after a pause that grows up to RETRY_MAX_S.
NO_MATCHING_SUBSCRIBERS = 16
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0


@dataclass(slots=True)
class LinkState:
    connected: bool = False
    connected_since: datetime | None = None
    reconnects: int = 0
    round_trip_ms: float = 0.0
    last_error: str = ""


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        *,
        device_id: str,
        site: str | None,
        store: Store,
        metrics: AgentMetrics,
        status: Callable[[LinkState, str, int, int], device_pb2.DeviceStatus],
        birth: Callable[[str, datetime], device_pb2.DeviceBirth],
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.site = site
        self.store = store
        self.metrics = metrics
        self._status = status
        self._birth = birth
        self.state = LinkState()
        self._lock = threading.Lock()
        # handed to paho, not yet acknowledged: (paho's message info, outbox id, kind, sent at,
        # stored at: the wall-clock time of the row's commit)
        self._inflight: list[tuple[mqtt.MQTTMessageInfo, int, str, float, float]] = []
        # wall-clock arrival of each delivering PUBACK by message id (paho thread), until the
        # drain thread collects it: store-to-ack is measured to the PUBACK, not to the flush
        self._acked_at: dict[int, float] = {}
        self._last_handed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)
        self._last_status = 0.0
        self._flushed = 0.0
        self._publish_ms = 0.5
        # PUBACKs that did not deliver: message ids (paho thread) and their outbox ids
        self._undelivered_mids: set[int] = set()
        self._retry_ids: set[int] = set()
        self._retry_at = 0.0
        self._retry_pause = RETRY_MIN_S
        self.connection_id = messages.new_message_id()
        self._connected_at = datetime.now(UTC)
        self.on_command: Callable[[deploy_pb2.DeployCommand], None] | None = None
        self.on_label: Callable[[label_pb2.WaferLabel], object] | None = None
        self._client = self._make_client()

    # ------------------------------------------------------------------ client set-up
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or self.device_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
        )
        if cfg.username:
            password = cfg.password
            if cfg.password_file is not None:
                password = cfg.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(cfg.username, password)
        if cfg.tls.enabled:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            )
            client.tls_insecure_set(cfg.tls.insecure)
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)),
            max_delay=max(1, round(cfg.reconnect_max_s)),
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._set_will(client)
        return client

    def _set_will(self, client: mqtt.Client) -> None:
        will = messages.last_will(
            self.device_id, self.connection_id, connected_at=datetime.now(UTC)
        )
        client.will_set(
            topics.last_will_topic(self.device_id, site=self.site),
            messages.encode(will),
            qos=topics.qos(topics.TopicKind.STATUS),
            retain=True,
            properties=self._props(will),
        )

    @staticmethod
    def _props(
        message: Any, traceparent: str = "", encoding: messages.PayloadEncoding = "json"
    ) -> Properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = messages.content_type(message, encoding)
        if encoding == "json":
            props.PayloadFormatIndicator = messages.PAYLOAD_FORMAT_UTF8
        if traceparent:  # W3C trace context for the hub's span (docs/observability.md)
            props.UserProperty = [(tracing.TRACEPARENT, traceparent)]
        return props

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.config.session_expiry_s
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=connect,
        )
        self._client.loop_start()
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Try to drain the outbox for a while, say OFFLINE (retained) and disconnect."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and self.state.connected:
            self._wake.set()
            with self._lock:
                idle = not self._inflight
            if idle and self.store.outbox_depth() == 0:
                break
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._flush_acks()
        if self.state.connected:
            status = self._status(
                self.state,
                self.connection_id,
                device_pb2.DEVICE_STATE_OFFLINE,
                device_pb2.STATUS_CAUSE_SHUTDOWN,
            )
            info = self._client.publish(
                topics.status_topic(self.device_id, site=self.site),
                messages.encode(status),
                qos=1,
                retain=True,
                properties=self._props(status),
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()
        self._flush_acks()

    # ------------------------------------------------------------------ callbacks (paho thread)
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self.state.last_error = str(reason)
            log.warning("broker refused the connection: %s", reason)
            return
        self._connected_at = datetime.now(UTC)
        log.info(
            "connected to %s:%d (session present: %s)",
            self.config.host,
            self.config.port,
            getattr(flags, "session_present", "?"),
        )
        birth = self._birth(self.connection_id, self._connected_at)
        client.publish(
            topics.birth_topic(self.device_id, site=self.site),
            messages.encode(birth),
            qos=1,
            retain=False,
            properties=self._props(birth),
        )
        for topic in topics.edge_subscriptions(self.device_id, site=self.site):
            client.subscribe(topic, qos=1)
        # only now may the drain thread publish: the birth is queued before any result
        self.state.connected_since = self._connected_at
        self.state.connected = True
        self._publish_status(device_pb2.STATUS_CAUSE_CONNECTED)
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was = self.state.connected
        self.state.connected = False
        self.state.connected_since = None
        if was:
            self.state.reconnects += 1
            log.warning("disconnected from the broker: %s", reason)
        # a new connection gets a new id, and its will must carry it
        self.connection_id = messages.new_message_id()
        self._set_will(client)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.state.last_error = "connection failed"

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            if reason.is_failure or reason.value == NO_MATCHING_SUBSCRIBERS:
                self._undelivered_mids.add(mid)
            else:
                self._acked_at[mid] = time.time()
        self._wake.set()  # the drain thread collects what was acknowledged

    # ------------------------------------------------------------------ drain (own thread)
    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=ACK_WAIT_S if self._inflight else 0.5)
            self._wake.clear()
            try:
                self._flush_acks(force=False)
                if self.state.connected:
                    self._hand_over()
                    if time.monotonic() - self._last_status >= self.config.heartbeat_s:
                        self._publish_status(device_pb2.STATUS_CAUSE_PERIODIC)
            except Exception:
                log.exception("outbox drain failed; retrying")
                time.sleep(0.5)

    def _flush_acks(self, *, force: bool = True) -> None:
        """Remove acknowledged messages from the outbox (the PUBACK marks paho's message info).

        Unless forced, waits until a few have gathered or a little time has passed, so that a
        stream of PUBACKs costs a few transactions, not one each."""
        with self._lock:
            acked = [e for e in self._inflight if e[0].is_published()]
            if not acked:
                return
            if (
                not force
                and len(acked) < ACK_BATCH
                and time.monotonic() - self._flushed < ACK_WAIT_S
            ):
                return
            self._flushed = time.monotonic()
            done = {id(e[0]) for e in acked}
            self._inflight = [e for e in self._inflight if id(e[0]) not in done]
            refused = [e for e in acked if e[0].mid in self._undelivered_mids]
            if refused:
                refused_mids = {e[0].mid for e in refused}
                self._undelivered_mids -= refused_mids
                acked = [e for e in acked if e[0].mid not in refused_mids]
                self._retry_ids.update(e[1] for e in refused)
                self._retry_at = time.monotonic() + self._retry_pause
                log.warning(
                    "the broker did not deliver %d message(s) (first outbox id %d): kept in the"
                    " outbox, sending again in %.1f s",
                    len(refused),
                    min(e[1] for e in refused),
                    self._retry_pause,
                )
                self._retry_pause = min(self._retry_pause * 2, RETRY_MAX_S)
            elif acked:
                self._retry_pause = RETRY_MIN_S
            flushed_at = time.time()
            ack_times = [self._acked_at.pop(e[0].mid, flushed_at) for e in acked]
            if self._acked_at:  # PUBACKs of status and birth messages: not outbox rows
                live = {e[0].mid for e in self._inflight}
                self._acked_at = {m: t for m, t in self._acked_at.items() if m in live}
        self.store.mark_published(entry[1] for entry in acked)
        now = time.perf_counter()
        for (_, _, kind, sent, stored_at), acked_at in zip(acked, ack_times, strict=True):
            self.metrics.published.labels(kind=kind).inc()
            self.state.round_trip_ms = (now - sent) * 1000.0
            if kind == "result" and stored_at > 0:
                # from the commit to the broker's PUBACK, resends and pauses included
                self.metrics.store_to_ack_seconds.observe(max(0.0, acked_at - stored_at))

    def _hand_over(self) -> None:
        with self._lock:
            if self._retry_ids:
                # undelivered messages go again, in order, once nothing else is in flight
                if self._inflight or time.monotonic() < self._retry_at:
                    return
                self._last_handed = min(self._retry_ids) - 1
                self._retry_ids.clear()
            room = self.config.max_inflight - len(self._inflight)
        while room > 0 and self.state.connected and not self._stop.is_set():
            rows = self.store.outbox_after(self._last_handed, min(room, 200))
            if not rows:
                return
            for row in rows:
                began = time.perf_counter()
                topic, payload, props = self._payload(row)
                # never call paho while holding our lock: paho calls on_publish under its own
                info = self._client.publish(topic, payload, qos=1, retain=False, properties=props)
                sent = time.perf_counter()
                if row.kind == "result":
                    publish_ms = (sent - began) * 1000.0
                    self.metrics.stage_seconds.labels(stage="publish").observe(publish_ms / 1000)
                    self._publish_ms = 0.8 * self._publish_ms + 0.2 * publish_ms
                with self._lock:
                    self._last_handed = row.id
                    self._inflight.append((info, row.id, row.kind, sent, row.created_at))
                room -= 1

    def _payload(self, row: OutboxRow) -> tuple[str, bytes, Properties]:
        """Topic, payload and properties of an outbox row. A result's ``publish_ms`` is the
        measured build-and-hand-over time of the results before it (a payload cannot contain
        the time it takes to build itself)."""
        span = observe.publish_span(row)
        message: result_pb2.WaferResult | alert_pb2.Alert
        if row.kind == "result":
            result = result_pb2.WaferResult.FromString(row.message)
            if not self.config.include_heatmap:
                result.ClearField("heatmap")
            if not self.config.include_embedding:
                result.ClearField("embedding")
            result.timings.publish_ms = self._publish_ms
            result.timings.total_ms += self._publish_ms
            topic = topics.result_topic(self.device_id, site=self.site)
            payload = messages.encode(result, self.config.encoding)
            message = result
        else:
            message = alert_pb2.Alert.FromString(row.message)
            topic = topics.alert_topic(self.device_id, site=self.site)
            payload = messages.encode(message, self.config.encoding)
        traceparent = observe.published(span, row, topic, message.sequence)
        return topic, payload, self._props(message, traceparent, self.config.encoding)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """A hub-to-edge message (a deploy command, a label): decode, check, hand over.

        A label is stored before this returns, so its PUBACK follows the commit.
        """
        content = getattr(msg.properties, "ContentType", None) if msg.properties else None
        try:
            _, message = messages.decode_topic(msg.topic, msg.payload, content)
        except WaferscopeError as exc:
            log.warning("ignored a bad message on %s: %s", msg.topic, exc)
            return
        if isinstance(message, deploy_pb2.DeployCommand) and self.on_command is not None:
            self.on_command(message)
        elif isinstance(message, label_pb2.WaferLabel) and self.on_label is not None:
            try:
                self.on_label(message)
            except WaferscopeError as exc:
                log.warning("ignored a label on %s: %s", msg.topic, exc)
            except sqlite3.Error:  # the store is unusable: say so, keep the link alive
                log.exception("could not store a label from %s", msg.topic)

    def publish_deploy_ack(self, ack: deploy_pb2.DeployAck) -> None:
        """Answer a deploy command (QoS 1, not retained)."""
        self._client.publish(
            topics.deploy_ack_topic(self.device_id, site=self.site),
            messages.encode(ack),
            qos=topics.qos(topics.TopicKind.DEPLOY_ACK),
            retain=False,
            properties=self._props(ack),
        )

    def publish_shadow_report(self, report: release_pb2.ShadowReport) -> None:
        """Send a release's shadow-trial report (QoS 1; the client queues it while offline)."""
        self._client.publish(
            topics.shadow_report_topic(self.device_id, site=self.site),
            messages.encode(report),
            qos=topics.qos(topics.TopicKind.SHADOW_REPORT),
            retain=False,
            properties=self._props(report),
        )

    def _publish_status(self, cause: int) -> None:
        self._last_status = time.monotonic()
        state = device_pb2.DEVICE_STATE_ONLINE
        status = self._status(self.state, self.connection_id, state, cause)
        self._client.publish(
            topics.status_topic(self.device_id, site=self.site),
            messages.encode(status),
            qos=1,
            retain=True,
            properties=self._props(status),
        )

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)
