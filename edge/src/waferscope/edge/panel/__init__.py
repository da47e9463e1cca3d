"""The operator panel: a small litestar app served by uvicorn in a thread of the agent.

Server-rendered pages (Jinja2) that reload themselves, a JSON API under ``/api``, Prometheus
``/metrics``, ``/healthz`` and ``/readyz``. Nothing to build on the device: templates and one
CSS file ship in the package.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from waferscope.edge.panel.web import create_app

if TYPE_CHECKING:
    from waferscope.edge.wiring import Wiring

__all__ = ["PanelServer", "create_app"]
log = logging.getLogger(__name__)


class PanelServer:
    def __init__(self, wiring: Wiring) -> None:
        cfg = wiring.config.panel
        self.app = create_app(wiring)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=cfg.host,
                port=cfg.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="panel", daemon=True)
        self.port = cfg.port

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        if not self._server.started:
            cfg = self._server.config
            raise OSError(
                f"the panel could not listen on {cfg.host}:{cfg.port} (is the port in use? "
                "set panel.port)"
            )
        for server in self._server.servers:
            for sock in server.sockets:
                self.port = sock.getsockname()[1]
        log.info("panel on http://%s:%d/", self._server.config.host, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
