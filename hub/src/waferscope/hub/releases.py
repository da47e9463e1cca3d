"""The release registry: signed ``.wsrelease`` files the hub verified, kept in the blob store.

``register_release`` checks one release file with the protocols verifier against the hub's
trusted root keys (``[releases] trusted_root_keys``): signatures, key delegation, expiry, every
bundle file — and, as an edge would, that its version is above the highest release of its channel
the hub holds (the same file again is answered with the release already registered). The file is
stored as a blob (kind ``releases``) and recorded with its manifest and the bundle's metrics.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waferscope.hub.blobs import BlobStore
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Release
from waferscope.hub.store.audit import audit
from waferscope.protocols import bundle, messages
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.release import (
    AcceptedRelease,
    ReleaseDowngradeError,
    trusted_roots,
    verify_release,
)


class ReleaseRegistryError(WaferscopeError):
    """The hub cannot register releases (no trusted root key configured) or the file is empty
    or too large."""


class ReleaseNotFoundError(WaferscopeError, KeyError):
    """No release has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "release not found"


def load_roots(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """The trusted root keys by key id (a bad key file raises ``ReleaseKeyError``)."""
    return trusted_roots(paths)


def highest(session: Session, channel: str) -> Release | None:
    """The release of ``channel`` with the highest version, if any."""
    top = session.scalar(select(func.max(Release.version)).where(Release.channel == channel))
    if top is None:
        return None
    return session.scalar(select(Release).where(Release.channel == channel, Release.version == top))


def _bundle_metrics(folder: Path) -> dict[str, float]:
    if not (folder / bundle.MANIFEST_NAME).is_file():
        return {}  # a release of an edge image, not an engine bundle
    return {k: float(v) for k, v in bundle.read_manifest(folder).metrics.items()}


def register_release(
    session: Session,
    blobs: BlobStore,
    data: bytes,
    roots: dict[str, Ed25519PublicKey],
    *,
    actor: str,
    name: str = "upload.wsrelease",
    max_bytes: int | None = None,
    remote_addr: str = "",
) -> tuple[Release, bool]:
    """Verify, store and record one release file: (row, whether it is new)."""
    if not roots:
        raise ReleaseRegistryError(
            "the hub has no trusted root key ([releases] trusted_root_keys is empty)"
        )
    if not data:
        raise ReleaseRegistryError(f"{name}: empty release file")
    if max_bytes is not None and len(data) > max_bytes:
        raise ReleaseRegistryError(f"{name}: {len(data)} bytes, over the {max_bytes}-byte limit")
    with tempfile.TemporaryDirectory(prefix="ws-release-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        # the verifier names the file it reads: name the upload, not the temporary folder
        verified = verify_release(path, roots, extract_to=Path(tmp) / "bundle")
        metrics = _bundle_metrics(Path(tmp) / "bundle")
    manifest = verified.manifest
    top = highest(session, manifest.channel)
    if top is not None:
        if top.version == verified.version and top.content_digest == verified.digest:
            return top, False
        accepted = AcceptedRelease(int(top.version), top.content_digest)
        if verified.version <= accepted.version:
            raise ReleaseDowngradeError(
                f"{name}: release {verified.version} of channel {manifest.channel!r} is not "
                f"above the highest registered release {accepted.version}"
            )
    digest = hashlib.sha256(data).hexdigest()
    key = blobs.put("releases", data)
    row = Release(
        release_id=new_message_id(),
        channel=manifest.channel,
        version=verified.version,
        model_version=manifest.model_version,
        sha256=digest,
        size_bytes=len(data),
        blob=key,
        content_digest=verified.digest,
        key_id=verified.key_id,
        metrics=metrics,
        manifest=messages.to_json_dict(manifest),
        expires_at=manifest.expires_time.ToDatetime(tzinfo=UTC).replace(tzinfo=None),
        registered_by=actor,
        created_at=utcnow(),
    )
    session.add(row)
    audit(
        session,
        actor,
        "release.register",
        row.release_id,
        {
            "channel": row.channel,
            "version": row.version,
            "model_version": row.model_version,
            "sha256": digest,
        },
        remote_addr=remote_addr,
    )
    session.flush()
    return row, True


def get_release(session: Session, release_id: str) -> Release:
    row = session.get(Release, release_id)
    if row is None:
        raise ReleaseNotFoundError(f"no release {release_id!r}")
    return row


def list_releases(session: Session, *, channel: str | None = None) -> list[Release]:
    stmt = select(Release)
    if channel:
        stmt = stmt.where(Release.channel == channel)
    return list(session.scalars(stmt.order_by(Release.created_at.desc(), Release.version.desc())))


def release_json(row: Release) -> dict[str, Any]:
    """The API's view of one release."""
    return {
        "release_id": row.release_id,
        "channel": row.channel,
        "version": int(row.version),
        "model_version": row.model_version,
        "sha256": row.sha256,
        "size": int(row.size_bytes),
        "metrics": row.metrics or {},
        "key_id": row.key_id,
        "content_digest": row.content_digest,
        "expires_at": row.expires_at.isoformat() + "Z",
        "registered_by": row.registered_by,
        "created_at": row.created_at.isoformat() + "Z",
    }
