"""Flower (flwr 1.42) command lines shared by the hub, which runs the SuperLink and submits runs,
and the trainer's deployment helpers: ``flower-superlink``, ``flwr run``, ``flwr supernode
register`` and the ``$FLWR_HOME/config.toml`` connection the ``flwr`` CLI reads.

The SuperLink serves Fleet, Control and Runtime APIs on one ``--host/--port``; runtime dependency
installation is off (air-gapped fabs: the app's code comes from the installed packages).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from waferscope.protocols.federation_credentials import TlsFiles


def executable(name: str) -> str:
    """The Flower console script next to this interpreter (a virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def process_env(flwr_home: Path | None = None) -> dict[str, str]:
    """The environment for Flower processes: this interpreter's scripts first on PATH (the
    SuperLink and SuperNodes start ``flower-superexec`` and the app processes by name), and
    ``FLWR_HOME`` when given."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def superlink_command(
    host: str,
    port: int,
    tls: TlsFiles | None,
    *,
    node_auth: bool = True,
    database: Path | None = None,
) -> list[str]:
    """``flower-superlink`` with TLS and node authentication (``database``: persistent state)."""
    cmd = [executable("flower-superlink"), "--host", host, "--port", str(port)]
    cmd.append("--disable-runtime-dependency-installation")
    if tls is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-certfile", str(tls.server_cert), "--ssl-keyfile", str(tls.server_key)]
        cmd += ["--ssl-ca-certfile", str(tls.ca_cert)]
    if node_auth:
        cmd.append("--enable-supernode-auth")
    if database is not None:
        cmd += ["--database", str(database)]
    return cmd


def toml_value(value: object) -> str:
    """A TOML literal of a string, number or boolean (JSON's forms are valid TOML for these)."""
    if not isinstance(value, str | int | float | bool):
        raise TypeError(f"no TOML literal for {type(value).__name__}")
    return json.dumps(value)


def write_connection(flwr_home: Path, name: str, address: str, ca_cert: Path | None) -> Path:
    """Add or replace the SuperLink connection ``name`` in ``$FLWR_HOME/config.toml``."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    lines = ["[superlink]", f"default = {toml_value(name)}", "", f"[superlink.{name}]"]
    lines.append(f"address = {toml_value(address)}")
    if ca_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f"root-certificates = {toml_value(str(ca_cert))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_command(app_dir: Path, connection: str, run_config: Mapping[str, object]) -> list[str]:
    """``flwr run`` of a Flower App folder with run-config overrides, streaming its logs."""
    overrides = " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())
    cmd = [executable("flwr"), "run", str(app_dir), connection, "--stream"]
    if overrides:
        cmd += ["--run-config", overrides]
    return cmd


def register_command(public_key: Path, connection: str) -> list[str]:
    """``flwr supernode register``: let the node holding this key pair join (node auth)."""
    return [executable("flwr"), "supernode", "register", str(public_key), connection]
