"""REST routes of the release registry: register a signed release, list, read, download (Range)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery

from waferscope.hub import auth
from waferscope.hub.app import Hub  # resolved at runtime: litestar injects it by this type
from waferscope.hub.blobs import BlobNotFoundError
from waferscope.hub.releases import (
    ReleaseNotFoundError,
    ReleaseRegistryError,
    get_release,
    list_releases,
    register_release,
    release_json,
)
from waferscope.hub.web.security import require
from waferscope.hub.web.views import AnyRequest, client_addr
from waferscope.protocols.release import ReleaseDowngradeError, ReleaseError

SHA256_HEADER = "X-Content-SHA256"
OCTETS = "application/octet-stream"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ReleaseRefusedError(HTTPException):
    """A release file the verifier refused (bad signature, expired, tampered file, ...)."""

    status_code = 422


class ReleaseConflictError(HTTPException):
    """A release whose version is not above its channel's highest."""

    status_code = 409


class RangeNotSatisfiableError(HTTPException):
    status_code = 416


HubDep = NamedDependency[Hub]


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


async def _upload_bytes(request: AnyRequest) -> tuple[bytes, str]:
    """The release file of the request: the raw body, or the first file of a multipart form."""
    if request.content_type[0] == "multipart/form-data":
        form = await request.form()
        for value in form.values():
            if hasattr(value, "read"):
                return await value.read(), getattr(value, "filename", "") or "upload.wsrelease"
        raise ClientException("the form holds no release file")
    return await request.body(), "upload.wsrelease"


def register(hub: Hub, request: AnyRequest, data: bytes, name: str) -> tuple[dict[str, Any], bool]:
    """Verify and record one release file for the caller (shared with the registry page)."""
    who = require(request)
    try:
        with hub.db.session(write=True) as s:
            row, new = register_release(
                s,
                hub.blobs,
                data,
                hub.release_roots,
                actor=who.username,
                name=name,
                max_bytes=hub.config.releases.max_release_bytes,
                remote_addr=client_addr(request),
            )
            return release_json(row), new
    except ReleaseDowngradeError as exc:
        raise ReleaseConflictError(detail=str(exc)) from None
    except ReleaseError as exc:
        raise ReleaseRefusedError(detail=str(exc)) from None
    except ReleaseRegistryError as exc:
        raise ClientException(detail=str(exc)) from None


@post("/", opt=_perm(auth.RELEASES))
async def post_release(request: AnyRequest, hub: HubDep) -> Response[dict[str, Any]]:
    """Register a signed release file (body: the ``.wsrelease`` bytes, or a multipart form);
    verified against the hub's trusted root keys. 201 when new, 200 when already registered."""
    from anyio import to_thread

    data, name = await _upload_bytes(request)
    body, new = await to_thread.run_sync(register, hub, request, data, name)
    return Response(body, status_code=201 if new else 200)


@get("/", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_releases(hub: HubDep, channel: FromQuery[str | None] = None) -> dict[str, Any]:
    """Registered releases, newest first."""
    with hub.db.session() as s:
        return {"releases": [release_json(r) for r in list_releases(s, channel=channel)]}


@get("/{release_id:str}", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_one_release(hub: HubDep, release_id: FromPath[str]) -> dict[str, Any]:
    """One release: channel, version, model version, sha256, size, metrics."""
    try:
        with hub.db.session() as s:
            return release_json(get_release(s, release_id))
    except ReleaseNotFoundError as exc:
        raise NotFoundException(str(exc)) from None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=`` header; None for the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or not (match[1] or match[2]):
        raise RangeNotSatisfiableError(detail=f"unsupported Range {header[:60]!r}")
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]) + 1, size) if match[2] else size
    else:  # the last N bytes
        start, end = max(size - int(match[2]), 0), size
    if start >= size or end <= start:
        raise RangeNotSatisfiableError(detail=f"Range {header[:60]!r} outside {size} bytes")
    return start, end


@get("/{release_id:str}/file", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_release_file(
    hub: HubDep, request: AnyRequest, release_id: FromPath[str]
) -> Response[bytes]:
    """The release file's bytes; a ``Range`` request gets 206 and the part (resumable
    downloads). The file's sha256 is in the ``X-Content-SHA256`` header."""
    try:
        with hub.db.session() as s:
            row = get_release(s, release_id)
            blob, sha, size = row.blob, row.sha256, int(row.size_bytes)
        data = hub.blobs.get(blob)
    except (ReleaseNotFoundError, BlobNotFoundError) as exc:
        raise NotFoundException(str(exc)) from None
    headers = {
        SHA256_HEADER: sha,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{release_id}.wsrelease"',
    }
    part = byte_range(request.headers.get("range"), size)
    if part is None:
        return Response(data, media_type=OCTETS, headers=headers)
    start, end = part
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Response(data[start:end], status_code=206, media_type=OCTETS, headers=headers)


RELEASES_ROUTER = Router(
    path="/api/v1/releases",
    route_handlers=[post_release, get_releases, get_one_release, get_release_file],
    tags=["releases"],
)
