"""``waferscope demo`` as a user runs it: a real process that starts the broker, the hub and an
edge agent, replays real maps, prints the URLs and a login, and stops cleanly on Ctrl-C; a second
run reuses the state or starts over, as asked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from waferscope.appliance.broker import INSTALL_HINT, mosquitto_binary
from waferscope.appliance.processes import ApplianceError, free_port

pytestmark = pytest.mark.slow


def start_demo(workdir: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    log = workdir.parent / f"{workdir.name}-{time.monotonic_ns()}.out"
    out = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "waferscope.protocols.cli.main",
            "demo",
            "--workdir",
            str(workdir),
            "--edges",
            "1",
            "--hub-port",
            str(free_port()),
            "--edge-port",
            str(free_port()),
            *args,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, log


def wait_for_text(proc: subprocess.Popen[str], log: Path, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}):\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")


def ctrl_c(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(90)


@pytest.fixture(autouse=True)
def _needs_broker() -> None:
    try:
        mosquitto_binary()
    except ApplianceError:
        pytest.skip(INSTALL_HINT)


def test_demo_runs_reports_and_stops_cleanly_then_reuses_or_cleans(
    tmp_path: Path, val_npz: Path
) -> None:
    workdir = tmp_path / "demo"
    proc, log = start_demo(workdir, "--data", str(val_npz), "--count", "6", "--rate", "0")
    try:
        text = wait_for_text(proc, log, r"hub stored 6,", 120)
    finally:
        code = ctrl_c(proc)
    text = log.read_text()
    assert code == 0, text
    hub_url = re.search(r"hub \(reviewer UI\):\s+(http://\S+)/\s+login: reviewer / (\S+)", text)
    assert hub_url, text
    password = hub_url.group(2)
    assert re.search(r"edge edge-01 panel:\s+http://127\.0\.0\.1:\d+/", text)
    assert "the simulator finished: 6 wafers" in text
    assert "stopping: simulator, edges" in text and "state kept in" in text
    # every process is gone
    state = json.loads((workdir / "state.json").read_text())
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{state['hub_port']}/healthz", timeout=1)
    assert (workdir / "logs" / "hub.log").is_file()
    assert len(list((workdir / "edges" / "edge-01" / "data" / "done").iterdir())) == 6

    # a second run keeps the results and the login
    proc, log = start_demo(workdir, "--no-simulator")
    try:
        text = wait_for_text(proc, log, r"press Ctrl-C", 120)
        assert "reusing the previous run's state" in text
        assert f"login: reviewer / {password}" in text
        port = json.loads((workdir / "state.json").read_text())["hub_port"]
        body = json.dumps({"username": "reviewer", "password": password}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        token = json.load(urllib.request.urlopen(req, timeout=10))["access_token"]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/results?limit=50",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert len(json.load(urllib.request.urlopen(req, timeout=10))["results"]) == 6
    finally:
        assert ctrl_c(proc) == 0

    # --fresh starts over: no results, a new login
    proc, log = start_demo(workdir, "--no-simulator", "--fresh")
    try:
        text = wait_for_text(proc, log, r"press Ctrl-C", 120)
        assert "starting over" in text
        assert f"login: reviewer / {password}" not in text
        assert not list((workdir / "edges" / "edge-01" / "data" / "done").glob("*"))
    finally:
        assert ctrl_c(proc) == 0


def test_demo_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    for args, expected in (
        (["--data", str(tmp_path / "missing.npz")], "missing.npz"),
        (["--format", "pdf"], "pdf"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "waferscope.protocols.cli.main",
                "demo",
                "--workdir",
                str(tmp_path / "w"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], done.stderr


def _children(pid: int) -> set[int]:
    """The launcher's child processes (they run in their own sessions, but stay its children)."""
    kids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            kids.add(int(status.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", ["ctrl-c behind a dead tee", "head stops reading"])
def test_a_closed_output_pipe_still_stops_every_child(
    tmp_path: Path, val_npz: Path, how: str
) -> None:
    """`waferscope demo | tee log` then Ctrl-C (tee dies first), or `| head`: the launcher
    loses its output and must still stop the broker, the hub and the edges."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "waferscope.protocols.cli.main", "demo",
            "--workdir", str(tmp_path / "demo"), "--edges", "1",
            "--hub-port", str(free_port()), "--edge-port", str(free_port()),
            "--data", str(val_npz), "--rate", "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 120
    while b"press Ctrl-C" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert b"press Ctrl-C" in seen, seen.decode()
    children = _children(proc.pid)
    assert len(children) >= 3, children  # broker, hub, edge
    proc.stdout.close()  # the reader is gone: every later write is a broken pipe
    if how.startswith("ctrl-c"):
        proc.send_signal(signal.SIGINT)
    code = proc.wait(120)  # `| head`: the next progress line finds the pipe closed
    assert code in (0, 1)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "children left running"
