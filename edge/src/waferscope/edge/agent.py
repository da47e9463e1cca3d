"""The running agent: starts its parts in order, stops them in reverse, on SIGTERM or SIGINT.

Stop order: ingest first (no new files; gRPC calls in progress get a grace period), then the
worker finishes the batch in hand and commits it, then the MQTT link drains what it can for a
few seconds, publishes OFFLINE (retained) and disconnects, then the panel, then the database is
checkpointed and closed. Whatever is not published stays in the outbox for the next start.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)


class Part(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Agent:
    """Parts in start order; :meth:`stop` stops them in reverse order."""

    parts: list[tuple[str, Part]]
    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    started: bool = False

    def start(self) -> None:
        for name, part in self.parts:
            log.debug("starting %s", name)
            part.start()
        self.started = True
        log.info("agent running")

    def stop(self) -> None:
        self.stopping.set()
        steps = [(name, part.stop) for name, part in reversed(self.parts)] + self.closers
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping %s failed", name)
        log.info("agent stopped")

    def run_until_signal(self) -> int:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stopping.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self.stopping.wait(1.0):
                pass
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
        return 0
