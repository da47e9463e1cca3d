"""Command lines and client config for a Flower deployment of the waferscope app (flwr 1.42).

``flower-superlink`` serves Fleet, Control and Runtime APIs on one ``--host/--port``;
``flower-supernode`` connects with ``--superlink HOST:PORT`` and serves its own runtime API on
``--port``; ``flwr run APP CONNECTION --stream`` submits the app, the connection being a named
entry of ``$FLWR_HOME/config.toml``. Runtime dependency installation (``uv sync`` of the app's
dependencies when a run starts) is switched off on the SuperLink and left off on SuperNodes:
fab sites are air-gapped and the app's code comes from the installed packages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from waferscope.protocols.federation_commands import (
    executable,
    process_env,
    superlink_command,
    write_connection,
)
from waferscope.protocols.federation_commands import run_command as flwr_run_command

__all__ = [
    "APP_DIR",
    "executable",
    "process_env",
    "run_command",
    "superlink_command",
    "supernode_command",
    "supervise_supernode",
    "write_connection",
]

APP_DIR = Path(__file__).with_name("flower_app")
# How flower-supernode says it cannot connect to or activate at the SuperLink: Flower's exit code
# 305 (flwr.supercore.exit.ExitCode.SUPERNODE_CONNECTION_ERROR) in its last words; the process
# itself exits with status 1 for every error.
SUPERNODE_CONNECTION_ERROR = "Exit Code: 305"


def supernode_command(
    superlink: str,
    port: int,
    data_paths: Sequence[Path],
    *,
    ca_cert: Path | None,
    private_key: Path | None,
    threads: int = 1,
    max_wait_time: float | None = None,
) -> list[str]:
    """A SuperNode whose ClientApp trains on ``data_paths`` (its node config ``data-path``)."""
    data = ",".join(str(Path(p).resolve()) for p in data_paths)
    node_config = f'data-path="{data}" threads={int(threads)}'
    cmd = [executable("flower-supernode"), "--superlink", superlink, "--port", str(port)]
    cmd += ["--node-config", node_config]
    cmd += ["--insecure"] if ca_cert is None else ["--root-certificates", str(ca_cert)]
    if private_key is not None:
        cmd += ["--auth-supernode-private-key", str(private_key)]
    if max_wait_time is not None:
        cmd += ["--max-wait-time", str(max_wait_time)]
    return cmd


def _copy_lines(source: TextIO, sink: TextIO, seen: list[str]) -> None:
    for line in source:
        sink.write(line)
        sink.flush()
        if SUPERNODE_CONNECTION_ERROR in line:
            seen.append(line)


def _run_once(cmd: list[str], env: dict[str, str], sink: TextIO) -> tuple[int, bool]:
    """One SuperNode life: (exit status, whether it was refused). The SuperNode runs in its own
    process group, ended with it: its SuperExec child can outlive it (it watches its parent's
    pid, which stays valid while the SuperNode is an unreaped zombie). SIGTERM is passed on."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    refused: list[str] = []
    reader = threading.Thread(target=_copy_lines, args=(proc.stdout, sink, refused), daemon=True)
    reader.start()

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    reader.join(timeout=10)
    return rc, bool(refused)


def supervise_supernode(
    cmd: list[str],
    env: dict[str, str],
    *,
    retry_for: float | None = None,
    backoff: tuple[float, float] = (5.0, 60.0),
    out: TextIO | None = None,
) -> int:
    """Run the SuperNode (its output copied to ``out``, default stdout); start it again while
    it stops with a connection error.

    A SuperNode killed without saying goodbye (power cut, crash) stays "online" at the SuperLink
    until two heartbeat intervals (60 s) pass; Flower 1.42 refuses to activate a restarted node
    with the same key until then, and the SuperNode exits (Flower's code 305) instead of
    waiting. The edge retries with growing pauses: for ever (``retry_for`` None, a service) or
    for ``retry_for`` seconds. Any other ending is returned as its exit status.
    """
    sink = out if out is not None else sys.stdout
    deadline = None if retry_for is None else time.monotonic() + retry_for
    pause = backoff[0]
    while True:
        rc, refused = _run_once(cmd, env, sink)
        if rc == 0 or not refused:
            return rc
        if deadline is not None and time.monotonic() + pause > deadline:
            return rc
        sink.write(f"waferscope: SuperNode could not connect or activate; again in {pause:.0f} s\n")
        sink.flush()
        time.sleep(pause)
        pause = min(backoff[1], pause * 2)


def run_command(connection: str, run_config: dict[str, Any]) -> list[str]:
    """``flwr run`` of the waferscope app with run-config overrides, streaming its logs."""
    return flwr_run_command(APP_DIR, connection, run_config)
