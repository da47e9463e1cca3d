"""Where an appliance keeps its state, and the configuration files it writes for its parts.

```
<root>/state.json                 ports and the reviewer login, kept for the next run
<root>/broker/                    mosquitto.conf and its persistence file
<root>/hub/hub.yaml, hub/data/    the hub's configuration, SQLite database and blobs
<root>/edges/<id>/edge.yaml       each edge's configuration
<root>/edges/<id>/data/incoming   its hot folder (done/, rejected/ and edge.sqlite beside it)
<root>/logs/                      one log file per process (broker.log, hub.log, edge-01.log)
```

The files are plain YAML in the parts' own documented formats (docs/edge-config.md,
docs/hub-config.md): a user can read them, change them and start a part by hand with them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATE_FILE = "state.json"
REVIEWER = "reviewer"


@dataclass
class ApplianceState:
    """What a second run reuses: ports (so bookmarks keep working) and the reviewer login."""

    broker_port: int = 0
    hub_port: int = 0
    edge_ports: list[int] = field(default_factory=list)
    reviewer_password: str = ""
    reviewer_created: bool = False

    @classmethod
    def load(cls, root: Path) -> ApplianceState:
        path = root / STATE_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls()

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(root / STATE_FILE)


def new_password() -> str:
    return secrets.token_urlsafe(9)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, nested tables merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class EdgeLayout:
    device_id: str
    tester_id: str
    folder: Path

    @property
    def config_file(self) -> Path:
        return self.folder / "edge.yaml"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def hot_folder(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def done_dir(self) -> Path:
        return self.data_dir / "done"

    @property
    def rejected_dir(self) -> Path:
        return self.data_dir / "rejected"

    @property
    def database(self) -> Path:
        return self.data_dir / "edge.sqlite"


class Layout:
    """The folders and files of one appliance under ``root``."""

    def __init__(self, root: Path, edges: int) -> None:
        self.root = root.resolve()
        self.edges = [
            EdgeLayout(f"edge-{i:02d}", f"T-{i:02d}", self.root / "edges" / f"edge-{i:02d}")
            for i in range(1, edges + 1)
        ]

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    @property
    def hub_config_file(self) -> Path:
        return self.hub_dir / "hub.yaml"

    @property
    def hub_data_dir(self) -> Path:
        return self.hub_dir / "data"

    @property
    def hub_database(self) -> Path:
        return self.hub_data_dir / "hub.sqlite"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def exists(self) -> bool:
        return (self.root / STATE_FILE).is_file()

    def clean(self) -> None:
        """Remove everything a previous run left (only folders this layout knows)."""
        for path in (self.broker_dir, self.hub_dir, self.root / "edges", self.logs_dir):
            shutil.rmtree(path, ignore_errors=True)
        (self.root / STATE_FILE).unlink(missing_ok=True)

    def make_folders(self) -> None:
        for path in (self.broker_dir, self.hub_data_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        for edge in self.edges:
            edge.hot_folder.mkdir(parents=True, exist_ok=True)


def hub_config(
    layout: Layout,
    *,
    broker_port: int,
    http_port: int,
    bundle: Path | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "data_dir": str(layout.hub_data_dir),
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": "waferscope-hub",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2,
        },
        "ingest": {"workers": 1},
        "http": {"host": "127.0.0.1", "port": http_port},
        "engine": {"bundle": str(bundle) if bundle else None, "threads": 1},
    }
    if bundle is None:
        del cfg["engine"]
    return deep_merge(cfg, extra or {})


def edge_config(
    edge: EdgeLayout,
    *,
    site: str,
    broker_port: int,
    panel_port: int,
    bundle: Path | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "device_id": edge.device_id,
        "site": site,
        "tester_id": edge.tester_id,
        "data_dir": str(edge.data_dir),
        # one engine thread: several processes share this machine's cores (docs/edge.md)
        "model": {"threads": 1, "watch": False},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2,
        },
        "panel": {"host": "127.0.0.1", "port": panel_port},
    }
    if bundle is not None:
        cfg["model"]["path"] = str(bundle)
    return deep_merge(cfg, extra or {})


def write_yaml(path: Path, data: dict[str, Any], comment: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    path.write_text(f"# {comment}\n{text}", encoding="utf-8")
    return path
