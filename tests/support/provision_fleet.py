"""A test fleet for the Ansible roles on this machine: one host = one folder (its root prefix).

Every host is reached with Ansible's local connection and keeps all its files below its own root
(``<tmp>/hosts/<name>/etc/...``, ``.../var/lib/...``, ``.../opt/...``), so one machine holds a
broker, a hub and edges whose files never mix. No systemd runs here: a service is started the way
systemd would start it, from its installed unit file (ExecStartPre, then ExecStart).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from local_services import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent


@dataclass
class ProvisionFleet:
    """A broker, a hub and edges on 127.0.0.1, each with its own root folder."""

    base: Path
    wheelhouse: Path
    image: Path | None = None  # a signed edge image: the edges install from it
    root_key: Path | None = None  # the root public key that image must verify against
    edges: tuple[str, ...] = ("edge-01", "edge-02")
    broker_port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    panel_ports: dict[str, int] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def root(self, host: str) -> Path:
        return self.base / "hosts" / host

    @property
    def inventory(self) -> Path:
        return self.base / "inventory" / "hosts.yml"

    def write_inventory(self) -> Path:
        """The inventory an operator would write, plus the per-host roots of this test."""
        local: dict[str, object] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        }
        # already root here and no sudo: the plays' 'become' is switched off per host
        local["ansible_become"] = False
        edges = {}
        for i, name in enumerate(self.edges, start=1):
            self.panel_ports.setdefault(name, free_port())
            edges[name] = {
                **local,
                "waferscope_edge_root": str(self.root(name)),
                "waferscope_edge_tester_id": f"T-{i:02d}",
                "waferscope_edge_panel_port": self.panel_ports[name],
            }
        inventory = {
            "all": {
                "vars": {
                    "waferscope_release_wheelhouse": str(self.wheelhouse),
                    "waferscope_edge_mqtt_host": "127.0.0.1",
                    "waferscope_hub_mqtt_host": "127.0.0.1",
                },
                "children": {
                    "waferscope_broker": {
                        "hosts": {
                            "broker": {
                                **local,
                                "waferscope_broker_root": str(self.root("broker")),
                                "waferscope_broker_install_package": False,
                                "waferscope_broker_user": "root",
                                "waferscope_broker_listen_address": "127.0.0.1",
                                "waferscope_broker_tls_port": self.broker_port,
                                "waferscope_broker_tls_names": ["127.0.0.1", "localhost"],
                                "waferscope_broker_service_manager": "none",
                            }
                        }
                    },
                    "waferscope_hub": {
                        "hosts": {
                            "hub": {
                                **local,
                                "waferscope_hub_root": str(self.root("hub")),
                                "waferscope_hub_user": "root",
                                "waferscope_hub_manage_user": False,
                                "waferscope_hub_http_host": "127.0.0.1",
                                "waferscope_hub_http_port": self.hub_port,
                                "waferscope_hub_mqtt_port": self.broker_port,
                                "waferscope_hub_service_manager": "none",
                            }
                        }
                    },
                    "waferscope_edges": {
                        "vars": {
                            "waferscope_edge_site": "fab1",
                            "waferscope_edge_user": "root",
                            "waferscope_edge_manage_user": False,
                            "waferscope_edge_panel_host": "127.0.0.1",
                            "waferscope_edge_mqtt_port": self.broker_port,
                            "waferscope_edge_service_manager": "none",
                            # one engine thread: several processes share this machine's cores
                            "waferscope_edge_extra_config": {"model": {"threads": 1}},
                            **self.image_vars(),
                        },
                        "children": {"fab1_line1": {"hosts": edges}},
                    },
                },
            }
        }
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
        return self.inventory

    def image_vars(self) -> dict[str, str]:
        if self.image is None or self.root_key is None:
            return {}
        return {
            "waferscope_edge_image": str(self.image),
            "waferscope_edge_release_root_key": str(self.root_key),
        }

    def playbook(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        cmd = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), f"playbooks/{name}", *args]
        return subprocess.run(
            cmd, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, check=False
        )

    def unit_commands(self, host: str, unit: str) -> tuple[list[list[str]], list[str]]:
        """(ExecStartPre commands, ExecStart command) of an installed unit file."""
        text = (self.root(host) / "etc/systemd/system" / unit).read_text(encoding="utf-8")
        pre = [shlex.split(m) for m in re.findall(r"^ExecStartPre=(.+)$", text, re.M)]
        start = re.search(r"^ExecStart=(.+)$", text, re.M)
        assert start, f"{unit} has no ExecStart"
        return pre, shlex.split(start.group(1))

    def start(self, host: str, unit: str, port: int, timeout: float = 90) -> Path:
        """Run the unit's ExecStartPre, then its ExecStart; wait until ``port`` answers."""
        pre, argv = self.unit_commands(host, unit)
        for command in pre:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{unit} ExecStartPre failed: {done.stdout}{done.stderr}"
        log = self.base / "logs" / f"{host}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(proc)
        wait_port(port, timeout, proc, log)
        return log

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {ok, changed, failed, ...}}."""
    hosts: dict[str, dict[str, int]] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return hosts
