"""Real Flower processes on loopback for the federated tests: a SuperLink with TLS and node
authentication, SuperNodes with registered keys, and ``flwr run`` of the waferscope app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_services import free_port, wait_port

from waferscope.trainer.federated.credentials import NodeKeys, TlsFiles, make_node_keys, make_tls
from waferscope.trainer.federated.deployment import (
    executable,
    process_env,
    run_command,
    superlink_command,
    supernode_command,
    write_connection,
)

CONNECTION = "waferscope-test"


@dataclass
class Node:
    name: str
    keys: NodeKeys
    data: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.keys.private_key.parent / f"{self.name}.{self.starts}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Federation:
    """Starts and stops the processes; every log goes to a file under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tls: TlsFiles = make_tls(root / "tls")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.flwr_home = root / "flwr-home"
        write_connection(self.flwr_home, CONNECTION, self.address, self.tls.ca_cert)
        self.env = process_env(self.flwr_home) | {"PYTHONUNBUFFERED": "1"}
        self.link: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, Node] = {}
        self.link_log = root / "superlink.log"

    def _spawn(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def start_link(self) -> None:
        cmd = superlink_command("127.0.0.1", self.port, self.tls, node_auth=True)
        self.link = self._spawn(cmd, self.link_log)
        wait_port(self.port, 60, self.link, self.link_log)

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def add_node(self, name: str, data: Path, *, register: bool) -> Node:
        node = Node(name, make_node_keys(self.root / "nodes", name), data)
        if register:
            done = self.flwr(
                executable("flwr"), "supernode", "register", str(node.keys.public_key), CONNECTION
            )
            assert done.returncode == 0, done.stdout + done.stderr
        self.nodes[name] = node
        return node

    def start_node(self, node: Node, **kwargs: Any) -> None:
        """flower-supernode as an edge would run it (TLS, its registered key, its data)."""
        node.starts += 1
        cmd = supernode_command(
            self.address,
            node.port,
            [node.data],
            ca_cert=self.tls.ca_cert,
            private_key=node.keys.private_key,
            **kwargs,
        )
        node.process = self._spawn(cmd, node.log)

    def start_edge_command(self, node: Node, retry_for: float) -> None:
        """The SuperNode through ``waferscope edge federated`` (which restarts refused starts)."""
        node.starts += 1
        cmd = [sys.executable, "-m", "waferscope.protocols.cli.main", "edge", "federated"]
        cmd += ["--superlink", self.address, "--data", str(node.data), "--port", str(node.port)]
        cmd += ["--ca-cert", str(self.tls.ca_cert), "--key", str(node.keys.private_key)]
        cmd += ["--retry-for", str(retry_for)]
        node.process = self._spawn(cmd, node.log)

    def kill_node(self, node: Node) -> None:
        """SIGKILL the SuperNode and everything it started (a power cut, not a shutdown)."""
        assert node.process is not None
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(10)

    def run(self, run_config: dict[str, Any]) -> subprocess.Popen[str]:
        log = (self.root / "flwr-run.log").open("w")
        return subprocess.Popen(
            run_command(CONNECTION, run_config),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            text=True,
            start_new_session=True,
        )

    def stop(self) -> None:
        procs = [n.process for n in self.nodes.values()] + [self.link]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
