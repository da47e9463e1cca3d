"""Real parts for the edge tests: a Mosquitto broker, an MQTT subscriber, tester files, agents."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from local_services import MOSQUITTO, Broker, free_port, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from waferscope.protocols.formats import get_writer
from waferscope.protocols.wafermap import WaferMap

__all__ = ["MOSQUITTO", "Broker", "free_port", "wait_for"]


@dataclass
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool


@dataclass
class Subscriber:
    """An MQTT v5 client with a persistent session that records every message it gets."""

    port: int
    topic: str = "waferscope/v1/#"
    client_id: str = "test-subscriber"
    messages: list[Received] = field(default_factory=list)
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        if self.ca_file is not None:
            self.client.tls_set(ca_certs=str(self.ca_file))
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def of_kind(self, kind: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith("/" + kind)]

    def unique_results(self) -> dict[str, dict[str, Any]]:
        return {m.payload["resultId"]: m.payload for m in self.of_kind("result")}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wafer_bytes(wafer: WaferMap, fmt: str = "e142") -> bytes:
    buf = io.BytesIO()
    get_writer(fmt).write([wafer], buf)
    return buf.getvalue()


def drop(folder: Path, name: str, data: bytes) -> Path:
    """Write by the rename-in convention: a hidden partial name first, then rename."""
    tmp = folder / f".{name}.part"
    tmp.write_bytes(data)
    target = folder / name
    os.replace(tmp, target)
    return target


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def agent_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "waferscope"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(exe), "edge", "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )


def agent_toml(
    tmp_path: Path,
    bundle: Path,
    broker_port: int,
    extra: str = "",
    *,
    panel: bool = False,
    device_id: str = "edge-01",
    tester_id: str = "T-01",
    top: str = "",
) -> Path:
    """A configuration for a test agent: real bundle, real broker, files under tmp_path.

    ``top``: top-level keys (before the first table); ``extra``: tables appended at the end."""
    text = f"""device_id = "{device_id}"
site = "fab3"
tester_id = "{tester_id}"
data_dir = "data"
{top}
[model]
path = "{bundle}"
threads = 1
max_batch = 16
warmup_runs = 1
providers = ["cpu"]
watch = false
[ingest.hot_folder]
settle_s = 0.3
poll_interval_s = 0.1
[mqtt]
port = {broker_port}
reconnect_min_s = 1
reconnect_max_s = 2
heartbeat_s = 2
[panel]
enabled = {"true" if panel else "false"}
port = 0
{extra}
"""
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def start_agent(config: Path) -> Any:
    """Build and start an in-process agent from a config file (the Wiring; stop its agent)."""
    from waferscope.edge.app import build_agent
    from waferscope.edge.config_loader import load_config

    wiring = build_agent(load_config(config, environ={}).config)
    wiring.agent.start()
    return wiring
