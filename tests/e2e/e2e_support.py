"""Helpers of the end-to-end tests: waiting, reading the hub's database, the hub's JSON API."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from typing import Any

from local_services import wait_for

from waferscope.appliance import Appliance
from waferscope.appliance.launcher import shipped_bundle
from waferscope.protocols.bundle import read_manifest

__all__ = ["DEFECT_PATTERNS", "Api", "hub_rows", "wait_for"]


def _defect_patterns() -> list[str]:
    """The shipped engine's pattern classes except ``none`` (what the e2e appliance runs)."""
    folder = shipped_bundle()
    assert folder is not None, "no shipped engine bundle"
    return [c for c in read_manifest(folder).pattern_classes if c != "none"]


DEFECT_PATTERNS = _defect_patterns()


def hub_rows(app: Appliance, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the hub's SQLite database (read-only, beside the running hub: WAL mode)."""
    db = app.layout.hub_database
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # the schema is being created
    finally:
        conn.close()


class Api:
    """The hub's JSON API with a reviewer's bearer token."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        body = self.call("POST", "/api/v1/auth/token", {"username": username, "password": password})
        self.token = body["access_token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.load(response)

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, body)
