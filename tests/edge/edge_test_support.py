"""Real parts for the edge tests: a Mosquitto broker, an MQTT subscriber, tester files, agents."""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from waferscope.protocols.formats import get_writer
from waferscope.protocols.wafermap import WaferMap

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")


class Broker:
    """A private Mosquitto on a free port, with persistence so sessions survive a restart."""

    def __init__(self, folder: Path, listener_conf: str = "allow_anonymous true\n") -> None:
        assert MOSQUITTO is not None
        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            # stay the current user (as root, mosquitto would switch to "mosquitto" and lose
            # access to the test's private folders)
            f"user {getpass.getuser()}\n"
            f"per_listener_settings false\nlistener {self.port} 127.0.0.1\n{listener_conf}"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
            f"max_queued_messages 100000\nlog_dest file {folder}/mosquitto.log\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, 10, what="mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistence file
            self.proc.wait(10)
        self.proc = None


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
