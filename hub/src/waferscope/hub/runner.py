"""Running the hub: ``hub run`` (web + ingest worker 0 + notifier + rules, plus the other ingest
workers as child processes) and ``hub ingest`` (one ingest worker process)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from waferscope.hub.config import HubConfig
from waferscope.hub.config_loader import load_config
from waferscope.protocols import tracing
from waferscope.protocols.settings import observability

log = logging.getLogger("waferscope.hub")


def setup_logging(config: HubConfig, worker: int | None = None) -> None:
    """Logs to stderr as text or JSON lines (docs/observability.md); ``worker`` is the ingest
    worker number of a process that runs one (None: a CLI command)."""
    observability.start_logging(
        "hub",
        config.log_level,
        config.log_format,
        static={"worker": worker},
        text_prefix="[hub] " if worker is None else f"[hub w{worker}] ",
    )


def setup_tracing(config: HubConfig, worker: int) -> bool:
    """Install the tracer provider the ``[tracing]`` section asks for; True when on."""
    instance = f"{config.mqtt.client_id}-w{worker}"
    return observability.start_tracing(config.tracing, role="hub", instance=instance)


def _wait_for_schema(config: HubConfig, timeout: float = 120) -> None:
    """Worker processes leave migrating to worker 0 and wait for it."""
    from waferscope.hub.db import migrate
    from waferscope.hub.db.engine import Database

    db = Database(config.database_url, config.database)
    deadline = time.monotonic() + timeout
    try:
        while not migrate.is_current(db.engine):
            if time.monotonic() > deadline:
                raise SystemExit(
                    "the database schema is not up to date: run 'waferscope hub migrate'"
                )
            time.sleep(0.5)
    finally:
        db.dispose()


def _until_signal() -> None:
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    done.wait()


def run_ingest(config_path: Path | None, worker: int) -> int:
    """One ingest worker until SIGTERM/SIGINT."""
    from waferscope.hub.app import Hub

    config = load_config(config_path).config
    setup_logging(config, worker)
    setup_tracing(config, worker)
    try:
        if worker > 0:
            _wait_for_schema(config)
        hub = Hub(config, worker=worker)
        hub.start_background(ingest=True, services=False)
        log.info("ingest worker %d running", worker)
        _until_signal()
        hub.stop()
    finally:
        tracing.shutdown_tracing()  # export the spans still buffered
    return 0


def _spawn_workers(config_path: Path | None, count: int) -> list[subprocess.Popen[bytes]]:
    args = [sys.executable, "-m", "waferscope.hub", "ingest"]
    if config_path is not None:
        args += ["--config", str(config_path)]
    return [subprocess.Popen([*args, "--worker", str(i)]) for i in range(1, count)]


def run_hub(config_path: Path | None) -> int:
    """The whole hub until SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from waferscope.hub.app import Hub

    loaded = load_config(config_path)
    config = loaded.config
    setup_logging(config, 0)
    setup_tracing(config, 0)
    hub = Hub(config, worker=0)
    hub.start_background()
    children = _spawn_workers(config_path, config.ingest.workers)
    log.info(
        "hub running: database %s, blobs %s, %d ingest worker(s)",
        hub.db.engine.url.render_as_string(hide_password=True),
        config.blobs.backend,
        config.ingest.workers,
    )
    try:
        if config.http.enabled:
            tls = config.http.tls
            server = uvicorn.Server(
                uvicorn.Config(
                    hub.web_app(),
                    host=config.http.host,
                    port=config.http.port,
                    log_level=config.log_level,
                    ssl_certfile=str(tls.cert_file) if tls.cert_file else None,
                    ssl_keyfile=str(tls.key_file) if tls.key_file else None,
                    ssl_ca_certs=str(tls.ca_file) if tls.ca_file else None,
                    ssl_cert_reqs=2 if tls.ca_file else 0,  # ssl.CERT_REQUIRED with a client CA
                    access_log=False,
                    # JSON lines: uvicorn's loggers go through ours instead of its own format
                    log_config=None if config.log_format == "json" else LOGGING_CONFIG,
                )
            )
            # uvicorn handles SIGTERM/SIGINT while it runs and raises the signal again after its
            # shutdown, with the handlers found before it started: make those no-ops, so that the
            # rest of the hub (workers, ingest, notifier) is stopped below and the exit code is 0.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: None)
            server.run()  # returns on SIGTERM / SIGINT
        else:
            _until_signal()
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        hub.stop()
        tracing.shutdown_tracing()
    return 0
