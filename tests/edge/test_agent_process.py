"""`waferscope edge run` as a real process: SIGKILL mid-stream and SIGTERM, then restart.

After each fault every accepted wafer reaches the broker exactly once as seen by a subscriber
that de-duplicates on the result id, and no wafer is classified twice or lost.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from edge_test_support import (
    Broker,
    Subscriber,
    agent_process,
    agent_toml,
    drop,
    wafer_bytes,
    wait_for,
)
from sample_wafers import dataset_wafers


def _check_exactly_once(sub: Subscriber, total: int) -> None:
    results = sub.unique_results()
    assert len(results) == total
    per_wafer = Counter(
        (r["wafer"]["sourceName"], r["wafer"]["waferIndex"]) for r in results.values()
    )
    assert max(per_wafer.values()) == 1, "a wafer was classified twice"
    assert sorted(int(r["sequence"]) for r in results.values()) == list(range(1, total + 1))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart(
    tmp_path: Path, bundle_dir: Path, broker: Broker, val_npz: Path
) -> None:
    sub = Subscriber(broker.port)
    config = agent_toml(tmp_path, bundle_dir, broker.port)
    incoming = tmp_path / "data" / "incoming"
    incoming.mkdir(parents=True)
    total = 150
    for i, wafer in enumerate(dataset_wafers(val_npz, total)):
        drop(incoming, f"k{i:04d}.xml", wafer_bytes(wafer))
    log = tmp_path / "agent.log"
    proc = agent_process(config, log)
    try:
        wait_for(lambda: len(sub.unique_results()) >= 20, 90, what="first results")
        proc.send_signal(signal.SIGKILL)  # mid-stream: files in the queue, a batch in hand
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        wait_for(
            lambda: any(
                m.payload["cause"] == "STATUS_CAUSE_LAST_WILL" for m in sub.of_kind("status")
            ),
            20,
            what="the last will",
        )
        before = len(sub.unique_results())
        assert before < total, "the kill came too late to test anything"
        assert list(incoming.iterdir())
        proc = agent_process(config, log)
        wait_for(lambda: len(sub.unique_results()) >= total, 120, what="all results after restart")
        wait_for(lambda: not list(incoming.iterdir()), 30, what="incoming empty")
        time.sleep(1.0)  # late duplicates, if any, would show now
        _check_exactly_once(sub, total)
        assert len(list((tmp_path / "data" / "done").iterdir())) == total
    finally:
        _stop(proc)
        sub.close()


@pytest.mark.slow
def test_sigterm_finishes_cleanly_and_restart_completes(
    tmp_path: Path, bundle_dir: Path, broker: Broker, val_npz: Path
) -> None:
    sub = Subscriber(broker.port)
    config = agent_toml(tmp_path, bundle_dir, broker.port)
    incoming = tmp_path / "data" / "incoming"
    incoming.mkdir(parents=True)
    total = 120
    for i, wafer in enumerate(dataset_wafers(val_npz, total, start=500)):
        drop(incoming, f"t{i:04d}.xml", wafer_bytes(wafer))
    log = tmp_path / "agent.log"
    proc = agent_process(config, log)
    try:
        wait_for(lambda: len(sub.unique_results()) >= 10, 90, what="first results")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-2000:]
        status = sub.of_kind("status")
        assert status[-1].payload["cause"] == "STATUS_CAUSE_SHUTDOWN"
        done = tmp_path / "data" / "done"
        in_done = {p.name for p in done.iterdir()}
        waiting = {p.name for p in incoming.iterdir()}
        assert len(in_done) + len(waiting) == total  # nothing lost, nothing half-moved
        proc = agent_process(config, log)
        wait_for(lambda: len(sub.unique_results()) >= total, 120, what="all results after restart")
        time.sleep(1.0)
        _check_exactly_once(sub, total)
        # a fresh subscriber sees the retained status and nothing else
        late = Subscriber(broker.port, client_id="late-subscriber")
        wait_for(lambda: bool(late.of_kind("status")), 10, what="retained status")
        time.sleep(0.5)
        assert late.messages[0].retain  # the retained status comes first ...
        assert {m.topic.rsplit("/", 1)[1] for m in late.messages} == {"status"}  # ... events never
        late.close()
    finally:
        _stop(proc)
        sub.close()


def test_a_panel_port_in_use_is_one_clear_error(tmp_path: Path, bundle_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = agent_toml(tmp_path, bundle_dir, 1, panel=True)
        config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
        log = tmp_path / "agent.log"
        proc = agent_process(config, log)
        assert proc.wait(60) == 1
    errors = [line for line in log.read_text().splitlines() if line.startswith("waferscope:")]
    assert len(errors) == 1, log.read_text()
    assert errors[0].startswith(
        f"waferscope: error: the panel could not listen on 127.0.0.1:{port}"
    )
    assert "internal error" not in log.read_text()
