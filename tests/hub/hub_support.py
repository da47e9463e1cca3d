"""Real parts for the hub tests: a private Mosquitto, an MQTT publisher that records PUBACKs,
a small HTTP receiver, and helpers to wait for things."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from local_services import MOSQUITTO, Broker, free_port, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["MOSQUITTO", "Broker", "free_port", "wait_for"]


@dataclass
class Publisher:
    """An edge-like MQTT v5 publisher that remembers which messages the broker accepted."""

    port: int
    client_id: str = "test-edge"
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    acked: set[str] = field(default_factory=set)
    no_subscribers: set[str] = field(default_factory=set)  # PUBACK reason 16: not delivered
    refused: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, str] = {}
        self._early: dict[int, int] = {}
        self.connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.tls_ca is not None:
            self.client.tls_set(ca_certs=str(self.tls_ca))
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda c, u, f, rc, p: (
            self.connected.set() if not rc.is_failure else self.refused.append(rc.value)
        )
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        host = "localhost" if self.tls_ca is not None else "127.0.0.1"
        self.client.connect_async(host, self.port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        # paho calls this holding its own lock: never call into paho while holding ours
        with self._lock:
            key = self._pending.pop(mid, None)
            if key is None:
                self._early[mid] = rc.value  # PUBACK before publish() returned
            else:
                self._record(key, rc.value)

    def _record(self, key: str, reason: int) -> None:
        if reason == 16:  # "No matching subscribers": accepted, but delivered to nobody
            self.no_subscribers.add(key)
        elif reason < 0x80:
            self.acked.add(key)

    def publish(self, topic: str, payload: bytes, key: str, *, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = key
            else:
                self._record(key, early)
        return info.mid

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class HttpReceiver:
    """A real HTTP server that records requests and answers with scripted status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[Received] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"status": status}).encode())

            do_POST = _handle  # noqa: N815
            do_PUT = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
