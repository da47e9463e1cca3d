"""The train-worker's HTTP client of the hub: token, training jobs, labels export, releases."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from waferscope.protocols.errors import WaferscopeError

JOBS = "/api/v1/training-jobs"


class HubRequestError(WaferscopeError):
    """The hub refused or could not answer a request (method, path, status and its reason)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HubClient:
    """One worker's session with a hub (and the release registry, by default the same hub)."""

    url: str
    username: str
    password: str
    worker: str
    registry_url: str | None = None
    timeout_s: float = 60.0
    _token: str | None = None

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        base: str | None = None,
        auth: bool = True,
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(
            (base or self.url).rstrip("/") + path, data=body, method=method
        )
        if body is not None:
            req.add_header("Content-Type", content_type)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as res:
                return int(res.status), res.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise HubRequestError(f"{method} {path}: HTTP {exc.code} {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise HubRequestError(f"{method} {path}: hub unreachable ({exc})") from None

    def _json(self, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
        body = None if doc is None else json.dumps(doc).encode()
        status, data = self._request(method, path, body=body)
        return None if status == 204 or not data else json.loads(data)

    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": self.username, "password": self.password}).encode()
            _, data = self._request("POST", "/api/v1/auth/token", body=body, auth=False)
            self._token = str(json.loads(data)["access_token"])
        return self._token

    def claim(self) -> dict[str, Any] | None:
        """The next queued job, now ours; None when there is none."""
        job: dict[str, Any] | None = self._json("POST", f"{JOBS}/claim", {"worker": self.worker})
        return job

    def progress(self, job_id: int, progress: float, stage: str, lines: list[str]) -> None:
        doc = {"worker": self.worker, "progress": progress, "stage": stage, "lines": lines}
        self._json("POST", f"{JOBS}/{job_id}/progress", doc)

    def finish(self, job_id: int, **fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._json(
            "POST", f"{JOBS}/{job_id}/finish", {"worker": self.worker, **fields}
        )
        return out

    def labels_export(self) -> bytes:
        """The hub's labelled wafers as a WM-811K-layout ``.npz`` (maps included)."""
        return self._request("GET", "/api/v1/labels/export")[1]

    def register_release(self, release: bytes) -> dict[str, Any]:
        """``POST /api/v1/releases``: one signed ``.wsrelease`` file; the registry's answer."""
        _, data = self._request(
            "POST",
            "/api/v1/releases",
            body=release,
            content_type="application/octet-stream",
            base=self.registry_url,
        )
        doc: dict[str, Any] = json.loads(data)
        if not doc.get("release_id"):
            raise HubRequestError(f"the registry answered without a release_id: {doc}")
        return doc
