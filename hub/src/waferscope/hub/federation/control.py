"""The hub's side of a Flower federation: the SuperLink child process, node keys, runs.

The hub owns the CA and the SuperLink's certificate (``<state_dir>/tls``), starts
``flower-superlink`` with TLS and ``--enable-supernode-auth`` (its database in the state folder,
so registered nodes survive restarts), provisions one key pair per edge
(``<state_dir>/nodes/<device>.key|.pub``), registers the public key with ``flwr supernode
register`` and hands the edge its key bundle. It submits a run (``flwr run``) when enough new
labels exist and reads round progress from the run's history file
(:mod:`waferscope.protocols.federation_history`). The hub never imports the trainer: Flower runs
as child processes (the hub's ``[federated]`` extra installs it).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waferscope.hub.federation.settings import FederationConfig
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.federation_commands import (
    process_env,
    register_command,
    run_command,
    superlink_command,
    write_connection,
)
from waferscope.protocols.federation_credentials import TlsFiles, make_node_keys, make_tls
from waferscope.protocols.federation_history import BUNDLE_DIR, read_history, read_summary
from waferscope.protocols.topics import validate_id

log = logging.getLogger("waferscope.hub.federation")
CONNECTION = "hub"


class FederationError(WaferscopeError):
    """The federation cannot do what was asked (not enabled, no SuperLink, unknown node...)."""


@dataclass(frozen=True)
class RunHandle:
    """A submitted ``flwr run``: its process and when it started."""

    process: subprocess.Popen[bytes]
    started_at: datetime
    labels_at_start: int


class FederationControl:
    """SuperLink lifecycle, node provisioning, run scheduling and progress for one hub."""

    def __init__(self, config: FederationConfig, data_dir: Path) -> None:
        self.config = config
        self.state_dir = config.state_dir or data_dir / "federation"
        self.flwr_home = self.state_dir / "flwr"
        self.superlink: subprocess.Popen[bytes] | None = None
        self.run: RunHandle | None = None
        self.candidate_registrar: Callable[[Path], str | None] = keep_in_run_folder

    # ------------------------------------------------------------------ files
    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "nodes"

    @property
    def ledger(self) -> Path:
        return self.state_dir / "nodes.json"

    def tls(self) -> TlsFiles:
        """The CA and SuperLink certificate (made on first use)."""
        files = TlsFiles(
            self.tls_dir / "ca.crt", self.tls_dir / "server.crt", self.tls_dir / "server.key"
        )
        if not all(p.is_file() for p in (files.ca_cert, files.server_cert, files.server_key)):
            hosts = tuple(dict.fromkeys((self.config.public_host, "localhost", "127.0.0.1")))
            files = make_tls(self.tls_dir, hosts)
        return files

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Provisioned edges: device id -> registration record."""
        if not self.ledger.is_file():
            return {}
        doc: dict[str, dict[str, Any]] = json.loads(self.ledger.read_text(encoding="utf-8"))
        return doc

    def _save_nodes(self, nodes: dict[str, dict[str, Any]]) -> None:
        tmp = self.ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps(nodes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.ledger)

    # ------------------------------------------------------------------ SuperLink
    def start(self) -> None:
        """Start ``flower-superlink`` (TLS + node auth) as a child; write the flwr connection."""
        if self.superlink is not None and self.superlink.poll() is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = self.tls()
        cmd = superlink_command(
            self.config.superlink_host,
            self.config.superlink_port,
            tls,
            node_auth=True,
            database=self.state_dir / "superlink.db",
        )
        write_connection(
            self.flwr_home, CONNECTION, f"127.0.0.1:{self.config.superlink_port}", tls.ca_cert
        )
        with (self.state_dir / "superlink.log").open("ab") as out:
            self.superlink = subprocess.Popen(
                cmd,
                cwd=self.state_dir,
                env=process_env(self.flwr_home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info(
            "SuperLink started (pid %d) on port %d", self.superlink.pid, self.config.superlink_port
        )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the run and the SuperLink (SIGKILL after ``timeout``)."""
        for proc in (self.run.process if self.run else None, self.superlink):
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the processes it started too
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.superlink = None

    @property
    def running(self) -> bool:
        return self.superlink is not None and self.superlink.poll() is None

    def _flwr(self, cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd,
            cwd=self.state_dir,
            env=process_env(self.flwr_home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ nodes
    def provision(self, device_id: str, *, attempts: int = 10) -> dict[str, Any]:
        """A key pair for an edge, registered at the SuperLink (which must be running)."""
        validate_id(device_id)
        if not self.running:
            raise FederationError("the SuperLink is not running (federation.enabled?)")
        keys = make_node_keys(self.nodes_dir, device_id)
        done = None
        for _ in range(attempts):  # the SuperLink may still be starting
            done = self._flwr(register_command(keys.public_key, CONNECTION))
            if done.returncode == 0:
                break
            time.sleep(1.0)
        assert done is not None
        if done.returncode != 0:
            raise FederationError(
                f"flwr supernode register {device_id}: {(done.stdout + done.stderr).strip()[-400:]}"
            )
        record = {
            "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "public_key": keys.public_key.read_text(encoding="utf-8").strip(),
            "node_id": _node_id(done.stdout),
        }
        nodes = self.nodes()
        nodes[device_id] = record
        self._save_nodes(nodes)
        return record

    def key_bundle(self, device_id: str) -> bytes:
        """A tar.gz with the CA certificate and the edge's key pair (for ``--ca-cert/--key``)."""
        validate_id(device_id)
        if device_id not in self.nodes():
            raise FederationError(f"edge {device_id} has no node key (provision it first)")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(self.tls_dir / "ca.crt", arcname="ca.crt")
            for suffix in (".key", ".pub"):
                tar.add(self.nodes_dir / f"{device_id}{suffix}", arcname=f"{device_id}{suffix}")
        return buf.getvalue()

    # ------------------------------------------------------------------ runs
    def run_dir(self) -> Path | None:
        """Where the configured run writes its state (run.output_dir/name of the train config)."""
        path = self.config.train_config
        if path is None or not path.is_file():
            return None
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        out = Path(str(doc.get("run", {}).get("output_dir", "trainer/runs")))
        return (out if out.is_absolute() else self.state_dir / out) / str(doc.get("name", "run"))

    def should_start(self, new_labels: int) -> bool:
        """A run is due: enabled, SuperLink up, no run going, enough labels since the last."""
        busy = self.run is not None and self.run.process.poll() is None
        return (
            self.config.enabled
            and self.running
            and not busy
            and self.config.app_dir is not None
            and self.config.train_config is not None
            and new_labels >= self.config.min_new_labels
        )

    def submit(self, labels_now: int) -> RunHandle:
        """``flwr run`` of the Flower App with this hub's settings."""
        if self.config.app_dir is None or self.config.train_config is None:
            raise FederationError("federation.app_dir and federation.train_config must be set")
        overrides: dict[str, object] = {
            "train-config": str(self.config.train_config),
            "num-rounds": self.config.rounds,
            "strategy": self.config.strategy,
            "proximal-mu": self.config.proximal_mu,
            "min-train-nodes": self.config.min_nodes,
            "min-available-nodes": self.config.min_nodes,
        }
        cmd = run_command(self.config.app_dir, CONNECTION, overrides)
        with (self.state_dir / "flwr-run.log").open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.state_dir,
                env=process_env(self.flwr_home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.run = RunHandle(proc, datetime.now(UTC), labels_now)
        log.info("federated run submitted (pid %d): %s", proc.pid, " ".join(cmd))
        return self.run

    def finish(self) -> Path | None:
        """When the submitted run has ended: hand its candidate bundle to the registrar."""
        if self.run is None or self.run.process.poll() is None:
            return None
        code, self.run = self.run.process.returncode, None
        run_dir = self.run_dir()
        bundle = run_dir / BUNDLE_DIR if run_dir is not None else None
        if code != 0 or bundle is None or not bundle.is_dir():
            log.warning("federated run ended with status %s and no candidate bundle", code)
            return None
        self.candidate_registrar(bundle)
        return bundle

    def progress(self) -> dict[str, Any]:
        """What the federation page and ``GET /api/v1/federation`` show."""
        run_dir = self.run_dir()
        rows = read_history(run_dir) if run_dir is not None else []
        node_to_edge = {
            int(r["node_id"]): device
            for device, r in self.nodes().items()
            if r.get("node_id") is not None
        }
        participation: dict[str, int] = {}
        for row in rows:
            for node in row.nodes:
                name = node_to_edge.get(node, f"node {node}")
                participation[name] = participation.get(name, 0) + 1
        return {
            "enabled": self.config.enabled,
            "superlink": {"running": self.running, "port": self.config.superlink_port},
            "run_active": self.run is not None and self.run.process.poll() is None,
            "rounds_planned": self.config.rounds,
            "rounds": [
                {
                    "round": r.round,
                    "nodes": [node_to_edge.get(n, f"node {n}") for n in r.nodes],
                    "gate_macro_f1": r.gate.get("gate-macro-f1", r.score),
                    "seconds": round(r.seconds, 1),
                    "bytes": r.bytes_down + r.bytes_up,
                    "epsilon": r.privacy.get("epsilon"),
                }
                for r in rows
            ],
            "participation": participation,
            "summary": read_summary(run_dir) if run_dir is not None else None,
            "nodes": sorted(self.nodes()),
        }


def _node_id(output: str) -> int | None:
    """The node id ``flwr supernode register`` prints (None if it printed none)."""
    for word in output.replace(":", " ").replace(",", " ").split():
        if word.isdigit() and len(word) > 6:
            return int(word)
    return None


def keep_in_run_folder(bundle: Path) -> str | None:
    """The registrar until the hub wires one (``federation/candidate.py``): the bundle stays."""
    log.warning("candidate bundle ready at %s (no release registrar wired)", bundle)
    return None
