"""Shared parts of the edge benchmarks: the bundle, a private broker, a timing subscriber,
tester files, and the agent as a real ``waferscope edge run`` process."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "edge"
sys.path.insert(0, str(ROOT / "tests" / "edge"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from edge_test_support import Broker, free_port, wait_for  # noqa: E402

from waferscope.edge.bundles import default_bundle_path  # noqa: E402
from waferscope.protocols.formats import get_writer, read_maps  # noqa: E402
from waferscope.protocols.wafermap import WaferInfo, WaferMap  # noqa: E402

__all__ = ["Broker", "free_port", "wait_for"]


def data_dir() -> Path:
    env = os.environ.get("WAFER_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


MODELS = ("default", "tiny")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model {default,tiny}`` and ``--bundle PATH`` (a bundle folder; overrides --model)."""
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="default",
        help="default: the bundle shipped with the agent (what `waferscope edge run` uses when "
        "no model path is configured); tiny: the tests' small CNN bundle, for comparison",
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="any other bundle folder (overrides --model)"
    )


def bundle(model: str = "default", path: Path | None = None) -> tuple[Path, str]:
    """The bundle folder to run and a line saying which it is."""
    if path is not None:
        if not (path / "manifest.json").is_file():
            raise SystemExit(f"{path} is not a bundle folder (no manifest.json)")
        return path.resolve(), f"bundle {path}"
    if model == "default":
        default = default_bundle_path()
        if not (default / "manifest.json").is_file():
            raise SystemExit(f"no default bundle at {default}; use --model tiny or --bundle PATH")
        manifest = json.loads((default / "manifest.json").read_text(encoding="utf-8"))
        name = manifest.get("modelVersion", "unversioned")
        return default, f"shipped default bundle ({name})"
    if model == "tiny":
        import tiny_bundle

        folder, _ = tiny_bundle.cached_bundle(data_dir() / "wm811k" / "val.npz", WORK)
        return folder, "tests' tiny CNN bundle (tests/support/tiny_bundle.py)"
    raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")


def typical_wafers(count: int, shape: tuple[int, int] = (25, 27)) -> Iterator[WaferMap]:
    """Real WM-811K val maps of the most common size (25 x 27 dies), distinct lot/wafer ids."""
    n = 0
    for i, wafer in enumerate(read_maps(data_dir() / "wm811k" / "val.npz")):
        grid = wafer.to_dense()
        if grid.shape != shape:
            continue
        yield wafer.with_(
            info=WaferInfo(lot_id=f"B{i:06d}", wafer_id=f"{n % 25 + 1:02d}", tester_id="T-01")
        )
        n += 1
        if n >= count:
            return


def big_tsk_wafer() -> WaferMap:
    return next(iter(read_maps(data_dir() / "tester" / "tsk" / "001.QR2352-D5U278-CP-1.gz")))


def as_bytes(wafer: WaferMap, fmt: str) -> bytes:
    buf = io.BytesIO()
    get_writer(fmt).write([wafer], buf)
    return buf.getvalue()


@dataclass
class TimedSubscriber:
    port: int
    arrivals: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.online = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-sub",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("waferscope/v1/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if msg.topic.endswith("/status"):
            if b"DEVICE_STATE_ONLINE" in msg.payload or b"DEVICE_STATE_DEGRADED" in msg.payload:
                self.online.set()
            return
        if not msg.topic.endswith("/result"):
            return
        doc = json.loads(msg.payload)
        with self.lock:
            self.arrivals.setdefault(doc["resultId"], (now, doc))

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def agent_config(folder: Path, bundle_dir: Path, port: int, threads: int, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "edge.toml"
    path.write_text(
        f'device_id = "bench-01"\ndata_dir = "data"\nlog_level = "warning"\n'
        f'[model]\npath = "{bundle_dir}"\nthreads = {threads}\nproviders = ["cpu"]\nwatch = false\n'
        f"[ingest.hot_folder]\nsettle_s = 0.5\n"
        f"[mqtt]\nport = {port}\n[panel]\nenabled = false\n{extra}",
        encoding="utf-8",
    )
    return path


class AgentProcess:
    """``waferscope edge run`` in its own process, with its CPU time and peak memory."""

    def __init__(self, config: Path) -> None:
        exe = Path(sys.executable).parent / "waferscope"
        self.log = config.parent / "agent.log"
        self.proc = subprocess.Popen(
            [str(exe), "edge", "run", "--config", str(config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def drop(folder: Path, name: str, data: bytes) -> None:
    tmp = folder / f".{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
