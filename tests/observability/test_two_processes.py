"""One wafer through a real edge agent process and a real hub ingest process.

The wafer is dropped into the agent's hot folder; the agent classifies it and publishes it to a
private Mosquitto; the hub stores it. Both processes write JSON log lines (``log_format =
"json"``) and export spans over OTLP/HTTP to a small real receiver in the test. The lines of both
processes about the wafer carry the same ``result_id`` and ``trace_id``, and the hub's ingest
span is a child of the edge's publish span in the same trace.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_test_support import Broker, drop, wafer_bytes, wait_for
from hub_testing import JWT_SECRET
from observability_support import OtlpReceiver, edge_toml, json_lines
from sample_wafers import dataset_wafers

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def hub_toml(tmp_path: Path, broker: Broker, otlp: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f"""data_dir = "{tmp_path / "hub-data"}"
log_level = "debug"
log_format = "json"
[database]
url = "sqlite:///{tmp_path / "hub.sqlite"}"
[mqtt]
port = {broker.port}
client_id = "hub-observability-test"
reconnect_min_s = 1
reconnect_max_s = 2
[http]
enabled = false
[auth]
jwt_secret = "{JWT_SECRET}"
[tracing]
enabled = true
otlp_endpoint = "{otlp}"
""",
        encoding="utf-8",
    )
    return path


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}
        )


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]


def logged(log: Path, words: str) -> bool:
    return any(words in str(line.get("msg", "")) for line in json_lines(log))


def stored_ids(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT result_id FROM results")]
    except sqlite3.OperationalError:  # the schema is being created
        return []


def one(items: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(items) == 1, (what, items)
    return items[0]


def test_one_wafer_carries_one_id_and_one_trace_through_edge_and_hub(
    tmp_path: Path, bundle_dir: Path, broker: Broker, receiver: OtlpReceiver, val_npz: Path
) -> None:
    hub_log, edge_log = tmp_path / "hub.log", tmp_path / "edge.log"
    hub_config = hub_toml(tmp_path, broker, receiver.url)
    edge_config = edge_toml(
        tmp_path,
        bundle_dir,
        broker.port,
        top='log_level = "debug"\nlog_format = "json"',
        sections=f'[tracing]\nenabled = true\notlp_endpoint = "{receiver.url}"',
    )
    hub = start(
        [str(BIN / "python"), "-m", "waferscope.hub", "ingest", "-c", str(hub_config)], hub_log
    )
    edge = None
    try:
        wait_for(lambda: logged(hub_log, "ingest worker 0 running"), 90, what="the hub")
        wait_for(lambda: logged(hub_log, "connected to"), 30, what="the hub's broker link")
        edge = start(
            [str(BIN / "waferscope"), "edge", "run", "--config", str(edge_config)], edge_log
        )
        wait_for(lambda: logged(edge_log, "agent running"), 90, what="the agent")
        (wafer,) = dataset_wafers(val_npz, 1, start=7)
        drop(tmp_path / "data" / "incoming", "LOTX_03.xml", wafer_bytes(wafer))
        wait_for(
            lambda: bool(stored_ids(tmp_path / "hub.sqlite")), 60, what="the result at the hub"
        )
        wait_for(lambda: logged(edge_log, "acknowledged by the broker"), 30, what="the PUBACK")
    finally:
        if edge is not None:
            stop(edge, edge_log)
        stop(hub, hub_log)

    (result_id,) = stored_ids(tmp_path / "hub.sqlite")
    edge_lines, hub_lines = json_lines(edge_log), json_lines(hub_log)
    assert edge_lines and hub_lines
    assert {line["role"] for line in edge_lines} == {"edge"}
    assert {line["role"] for line in hub_lines} == {"hub"}
    assert all(line["device_id"] == "edge-07" for line in edge_lines)

    # the edge: the file's lines name it, the wafer's lines carry the result id
    about_file = [line for line in edge_lines if line.get("source") == "LOTX_03.xml"]
    assert any("queued" in line["msg"] for line in about_file)
    assert any(line["msg"] == "parsed: 1 wafers, 0 refused" for line in about_file)
    edge_wafer = [line for line in edge_lines if line.get("result_id") == result_id]
    for words in (
        "wafer parsed",
        "classified as",
        "committed as",
        "publishing result",
        "acknowledged",
    ):
        assert any(words in line["msg"] for line in edge_wafer), (words, edge_wafer)
    # the hub: the lines about the message carry the same id
    hub_wafer = [line for line in hub_lines if line.get("result_id") == result_id]
    assert any(line["msg"] == "received result from edge-07" for line in hub_wafer), hub_wafer
    assert any(line["msg"] == "result stored" for line in hub_wafer), hub_wafer
    for line in hub_wafer:
        assert line["device_id"] == "edge-07" and line["source"] == "LOTX_03.xml"
        assert line["worker"] == 0
    # ... and the same trace id on both sides
    trace_ids = {line.get("trace_id") for line in edge_wafer + hub_wafer}
    assert len(trace_ids) == 1 and None not in trace_ids, trace_ids
    (trace_id,) = trace_ids

    # the spans both processes exported: one trace, the hub's ingest under the edge's publish
    spans = [s for s in receiver.spans() if s["trace_id"] == trace_id]
    assert all(path == "/v1/traces" for path in receiver.paths)
    names = {s["name"]: s for s in spans}
    for name in ("edge.ingest", "edge.parse", "edge.wafer", "edge.validate", "edge.infer"):
        assert name in names, (name, sorted(names))
    publish = one([s for s in spans if s["name"] == "edge.publish"], "edge.publish")
    ingest = one([s for s in spans if s["name"] == "hub.ingest"], "hub.ingest")
    assert publish["service"] == "waferscope-edge" and ingest["service"] == "waferscope-hub"
    assert publish["parent_id"] == names["edge.wafer"]["span_id"]
    assert ingest["parent_id"] == publish["span_id"]
    assert ingest["attributes"]["waferscope.message.id"] == result_id
    assert ingest["attributes"]["waferscope.ingest.status"] == "stored"
    children = {s["name"] for s in spans if s["parent_id"] == ingest["span_id"]}
    assert children == {"hub.decode", "hub.commit"}
    assert names["edge.ingest"]["parent_id"] == ""
