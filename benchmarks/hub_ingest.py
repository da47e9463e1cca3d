"""Hub ingest: sustained results/s and publish -> committed latency (real Mosquitto, real hub).

A private Mosquitto is started on a free port, then 1 or 2 ``waferscope hub ingest`` worker
processes (a shared subscription when 2) on SQLite or PostgreSQL, then one edge-like publisher
offers results at a fixed rate for a fixed time. The payloads are real WaferResults built from
WM-811K maps (with the 64 x 64 Grad-CAM heatmap inline, no embedding: the edge's defaults), each
with a fresh result id. Each hub worker appends "<result_id> <commit time>" per result as its
transaction commits (``ingest.commit_log``); latency = commit time - the moment the publisher
handed the message to paho. Rate = results / (last commit - first publish).

    python benchmarks/hub_ingest.py --db sqlite --workers 1 --rate 2000 --seconds 20
    python benchmarks/hub_ingest.py --db postgresql --workers 2 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from waferscope.protocols import messages, topics
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_dense
from waferscope.protocols.pb import common_pb2, result_pb2

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WAFER_DATA_DIR", REPO.parent / "shared" / "data"))
MOSQUITTO = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
PG_ADMIN = os.environ.get(
    "WAFERSCOPE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def templates(count: int) -> list[tuple[str, bytes]]:
    """(result id, payload) of real-map results; the id is swapped per publish."""
    arrays = load_labelled_arrays(DATA / "wm811k" / "val.npz")
    out = []
    for i in range(count):
        j = (i * 7919) % len(arrays)
        grid = np.asarray(arrays.maps[j])
        label = arrays.labels_of(j)[0]
        heat = (np.clip(encode_dense(grid)[1] * 4, 0, 1) * 255).astype(np.uint8)
        fail = int(np.count_nonzero(grid == 2))
        dies = int(np.count_nonzero(grid))
        msg = result_pb2.WaferResult(
            result_id=messages.new_message_id(),
            device_id="edge-bench",
            sequence=i + 1,
            wafer=common_pb2.WaferIdentity(
                lot_id=f"LOT{i // 25:05d}",
                wafer_id=f"{i % 25 + 1:02d}",
                tester_id=f"T-{i % 8:02d}",
                source_format="wm811k",
            ),
            die_count=dies,
            pass_count=dies - fail,
            fail_count=fail,
            yield_fraction=(dies - fail) / max(dies, 1),
            map=messages.pack_states(grid),
            pattern=result_pb2.Prediction(name=label, probability=0.8),
            confidence=0.55 + (i % 45) / 100,
            model_version="bench-1",
            encoding_version=1,
            heatmap=result_pb2.Heatmap(rows=64, cols=64, data=heat.tobytes(), method="gradcam"),
        )
        msg.classified_time.GetCurrentTime()
        out.append((msg.result_id, messages.encode(msg)))
    return out


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {folder}/\nmax_queued_messages 1000000\n"
        "max_inflight_messages 2000\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def database(kind: str, folder: Path) -> tuple[str, object]:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'hub.sqlite'}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ws_hub_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), drop


def run(
    db_kind: str, workers: int, rate: int, seconds: float, batch_wait_ms: float
) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    broker, port = start_broker(folder)
    url, drop = database(db_kind, folder)
    config = folder / "hub.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\n[database]\nurl = "{url}"\n'
        f'[mqtt]\nport = {port}\nclient_id = "hub-bench"\n'
        f"[ingest]\nworkers = {workers}\nbatch_wait_ms = {batch_wait_ms}\n"
        f'commit_log = "{folder / "commits"}"\n'
        f'[http]\nenabled = false\n[auth]\njwt_secret = "{"b" * 40}"\n'
    )
    hubs = []
    for w in range(workers):
        hubs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "waferscope.hub",
                    "ingest",
                    "--config",
                    str(config),
                    "--worker",
                    str(w),
                ],
                stdout=(folder / f"hub{w}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        time.sleep(1.5 if w == 0 else 0.2)  # worker 0 migrates the schema first
    pool = templates(3000)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="edge-bench",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    time.sleep(3.0)  # let every worker connect and subscribe
    topic = topics.result_topic("edge-bench")
    published: dict[str, float] = {}
    total = int(rate * seconds)
    start = time.time()
    for i in range(total):
        due = start + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        old_id, payload = pool[i % len(pool)]
        new_id = str(uuid.uuid4())
        published[new_id] = time.time()
        client.publish(topic, payload.replace(old_id.encode(), new_id.encode(), 1), qos=1)
    offered_s = time.time() - start
    commits: dict[str, float] = {}
    deadline = time.time() + 120
    while len(commits) < total and time.time() < deadline:
        time.sleep(0.5)
        for w in range(workers):
            log = folder / f"commits.w{w}.log"
            if log.exists():
                for line in log.read_text().splitlines():
                    rid, _, when = line.partition(" ")
                    commits[rid] = float(when)
    client.loop_stop()
    client.disconnect()
    for h in hubs:
        h.send_signal(signal.SIGTERM)
    for h in hubs:
        h.wait(30)
    broker.terminate()
    broker.wait(10)
    drop()  # type: ignore[operator]
    pairs = sorted((published[r], commits[r]) for r in commits if r in published)
    latency = np.array([c - p for p, c in pairs]) * 1000
    second = np.array([p - start for p, _ in pairs]).astype(int)
    timeline = [
        round(float(latency[second == s].max()), 0)
        for s in range(int(seconds))
        if np.any(second == s)
    ]
    span = max(commits.values()) - min(published.values()) if commits else float("nan")
    return {
        "db": db_kind,
        "workers": workers,
        "offered_rate": rate,
        "seconds": seconds,
        "offered_achieved_s": round(offered_s, 2),
        "published": total,
        "committed": len(commits),
        "rate": round(len(commits) / span, 1),
        "p50_ms": round(float(np.percentile(latency, 50)), 1),
        "p99_ms": round(float(np.percentile(latency, 99)), 1),
        "max_ms": round(float(latency.max()), 1),
        "payload_bytes": len(pool[0][1]),
        "max_ms_per_second": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=int, default=2000, help="offered results per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch-wait-ms", type=float, default=20.0)
    args = parser.parse_args()
    result = run(args.db, args.workers, args.rate, args.seconds, args.batch_wait_ms)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
