"""A private Mosquitto broker for the appliance: a free local port, persistence in its own
folder (sessions and queued messages survive a restart), a log file."""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from waferscope.appliance.processes import ApplianceError, ManagedProcess, free_port, port_open

INSTALL_HINT = (
    "the mosquitto broker is not installed: scripts/setup.sh installs it, or run "
    "'apt-get install mosquitto' (Debian/Ubuntu) or 'brew install mosquitto' (macOS)"
)


def mosquitto_binary() -> Path:
    """Where the broker program is; ApplianceError naming the install command if nowhere."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for candidate in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto")):
        if candidate.is_file():
            return candidate
    raise ApplianceError(INSTALL_HINT)


class MosquittoBroker:
    """One Mosquitto process on 127.0.0.1 with persistence under ``folder``."""

    def __init__(self, folder: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port(host=host)
        self.process = ManagedProcess(
            "broker",
            [str(mosquitto_binary()), "-c", str(folder / "mosquitto.conf")],
            folder / "mosquitto.log",
        )

    def write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Started as root, Mosquitto switches to the 'mosquitto' user unless told otherwise and
        # then cannot write its persistence file into our folder.
        run_as = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "# written by waferscope's appliance launcher; rewritten at every start\n"
            f"per_listener_settings false\n{run_as}"
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.folder}/\nautosave_interval 5\n"
            "max_queued_messages 200000\nmax_inflight_messages 1000\n"
            "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages true\n",
            encoding="utf-8",
        )
        return conf

    def start(self, timeout: float = 15.0) -> None:
        if port_open(self.port, self.host):
            raise ApplianceError(f"broker port {self.host}:{self.port} is already in use")
        self.write_config()
        self.process.start()
        self.process.wait_until(
            lambda: port_open(self.port, self.host), timeout, f"listening on port {self.port}"
        )

    def stop(self) -> None:
        self.process.stop(timeout=10)

    def kill(self) -> None:
        self.process.kill()

    @property
    def running(self) -> bool:
        return self.process.running
