"""The appliance on one machine: a broker, the hub and N edge agents as separate processes.

``Appliance`` writes each part's configuration (layout.py), starts the parts in dependency
order (broker, hub, edges), waits until each says it is ready, and stops them in reverse order
so that every edge can drain its outbox and say goodbye before the hub and the broker go.
It is what ``waferscope demo``, the end-to-end tests and the whole-path benchmarks run.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waferscope.appliance.broker import MosquittoBroker
from waferscope.appliance.layout import (
    REVIEWER,
    ApplianceState,
    EdgeLayout,
    Layout,
    edge_config,
    hub_config,
    new_password,
    write_yaml,
)
from waferscope.appliance.processes import (
    ApplianceError,
    ManagedProcess,
    free_port,
    http_ok,
    waferscope_command,
)

log = logging.getLogger(__name__)

DEFAULT_HUB_PORT = 8400
DEFAULT_EDGE_PORT = 8401


def shipped_bundle() -> Path | None:
    """The engine bundle shipped inside the edge package (found as data, not imported)."""
    from importlib.resources import files

    try:
        folder = Path(str(files("waferscope.edge").joinpath("bundles/default")))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "manifest.json").is_file() else None


@dataclass
class ApplianceOptions:
    edges: int = 2
    site: str = "demo"
    bundle: Path | None = None  # None: the shipped bundle
    hub_port: int | None = None  # None: the last run's, else 8400, else any free port
    edge_ports: list[int] = field(default_factory=list)
    hub_extra: dict[str, Any] = field(default_factory=dict)
    edge_extra: dict[str, Any] = field(default_factory=dict)
    start_timeout_s: float = 120.0
    create_reviewer: bool = True


@dataclass
class EdgeProcess:
    layout: EdgeLayout
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Appliance:
    """Start, reach and stop one whole appliance under ``root``."""

    def __init__(self, root: Path, options: ApplianceOptions | None = None) -> None:
        self.options = options or ApplianceOptions()
        if self.options.edges < 1:
            raise ApplianceError("an appliance needs at least one edge agent")
        self.layout = Layout(root, self.options.edges)
        self.state = ApplianceState.load(self.layout.root)
        self.bundle = self.options.bundle or shipped_bundle()
        self.broker: MosquittoBroker | None = None
        self.hub: ManagedProcess | None = None
        self.hub_port = 0
        self.edges: list[EdgeProcess] = []

    # ------------------------------------------------------------------ addresses
    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def reviewer_login(self) -> tuple[str, str]:
        return REVIEWER, self.state.reviewer_password

    @property
    def broker_port(self) -> int:
        if self.broker is None:
            raise ApplianceError("the appliance is not started")
        return self.broker.port

    # ------------------------------------------------------------------ life cycle
    def prepare(self) -> None:
        """Choose ports (the last run's when still free), write every configuration file."""
        opts = self.options
        self.layout.make_folders()
        st = self.state
        st.broker_port = free_port(st.broker_port or None)
        self.hub_port = free_port(opts.hub_port or st.hub_port or DEFAULT_HUB_PORT)
        st.hub_port = self.hub_port
        ports: list[int] = []
        for i in range(opts.edges):
            wanted = (
                opts.edge_ports[i]
                if i < len(opts.edge_ports)
                else (st.edge_ports[i] if i < len(st.edge_ports) else DEFAULT_EDGE_PORT + i)
            )
            port = free_port(wanted)
            while port in ports or port in (self.hub_port, st.broker_port):
                port = free_port()
            ports.append(port)
        st.edge_ports = ports
        if not st.reviewer_password:
            st.reviewer_password = new_password()
        self.broker = MosquittoBroker(self.layout.broker_dir, st.broker_port)
        self.broker.process.log_file = self.layout.logs_dir / "broker.log"
        write_yaml(
            self.layout.hub_config_file,
            hub_config(
                self.layout,
                broker_port=st.broker_port,
                http_port=self.hub_port,
                bundle=self.bundle,
                extra=opts.hub_extra,
            ),
            "the hub of a waferscope appliance (written by the launcher at every start)",
        )
        self.hub = ManagedProcess(
            "hub",
            [*waferscope_command("hub", "run", "--config", str(self.layout.hub_config_file))],
            self.layout.logs_dir / "hub.log",
        )
        self.edges = []
        for edge, port in zip(self.layout.edges, ports, strict=True):
            write_yaml(
                edge.config_file,
                edge_config(
                    edge,
                    site=opts.site,
                    broker_port=st.broker_port,
                    panel_port=port,
                    bundle=self.options.bundle,
                    extra=opts.edge_extra,
                ),
                f"edge agent {edge.device_id} (written by the appliance launcher at every start)",
            )
            argv = waferscope_command("edge", "run", "--config", str(edge.config_file))
            process = ManagedProcess(
                edge.device_id, argv, self.layout.logs_dir / f"{edge.device_id}.log"
            )
            self.edges.append(EdgeProcess(edge, port, process))
        st.save(self.layout.root)

    def start(self) -> None:
        """Start every part and wait until each is ready; on failure stop what started."""
        if self.broker is None:
            self.prepare()
        assert self.broker is not None
        assert self.hub is not None
        timeout = self.options.start_timeout_s
        try:
            self.broker.start()
            self.migrate_and_add_reviewer()
            self.hub.start()
            self.hub.wait_until(
                lambda: http_ok(self.hub_url + "/readyz"), timeout, f"ready at {self.hub_url}"
            )
            for edge in self.edges:
                edge.process.start()
            for edge in self.edges:
                url = edge.url + "/readyz"
                edge.process.wait_until(
                    lambda url=url: http_ok(url),  # type: ignore[misc]
                    timeout,
                    f"ready at {edge.url}",
                )
        except BaseException:
            self.stop()
            raise

    def migrate_and_add_reviewer(self) -> None:
        """Create the reviewer login once (on a schema brought up to date first). Later starts
        skip both: the hub brings its schema up to date itself when it starts."""
        if not self.options.create_reviewer or self.state.reviewer_created:
            return
        config = str(self.layout.hub_config_file)
        self._run_hub_cli("migrate", "--config", config)
        self._run_hub_cli(
            "user",
            "add",
            REVIEWER,
            "--role",
            "reviewer",
            "--password",
            self.state.reviewer_password,
            "--config",
            config,
        )
        self.state.reviewer_created = True
        self.state.save(self.layout.root)

    def _run_hub_cli(self, *args: str) -> None:
        done = subprocess.run(
            waferscope_command("hub", *args), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise ApplianceError(
                f"'waferscope hub {args[0]}' failed: {detail[-1] if detail else done.returncode}"
            )

    def stop(self) -> None:
        """Edges first (they drain their outboxes while the hub listens), then hub, broker."""
        for edge in self.edges:
            edge.process.signal(15)
        for edge in self.edges:
            edge.process.stop(timeout=30)
        if self.hub is not None:
            self.hub.stop(timeout=30)
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Appliance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what tests and drills do
    def edge(self, device_id: str) -> EdgeProcess:
        for edge in self.edges:
            if edge.layout.device_id == device_id:
                return edge
        raise KeyError(device_id)

    def crashed(self) -> list[str]:
        """Names of the parts that should be running and are not."""
        parts: list[ManagedProcess] = [e.process for e in self.edges]
        if self.hub is not None:
            parts.append(self.hub)
        if self.broker is not None:
            parts.append(self.broker.process)
        return [p.name for p in parts if p.proc is not None and not p.running]
