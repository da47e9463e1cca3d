"""The model registry: engine bundles the hub knows, kept as archives in the blob store.

``register`` verifies a bundle folder with the protocols contract (every listed file present with
its size and SHA-256), packs it into a deterministic ``tar.gz`` (sorted names, zero times and
owners, so the same bundle always gives the same archive and blob key), stores the archive in the
blob store (kind ``bundles``) and records it with its manifest. Signed releases, which edges
install, and their rollouts are ``releases.py`` and ``rollout/``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from waferscope.hub.blobs import BlobStore
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import ModelVersion
from waferscope.hub.store.audit import audit
from waferscope.protocols import bundle, messages
from waferscope.protocols.errors import WaferscopeError


class RegistryError(WaferscopeError):
    """A bundle cannot be registered."""


def pack(folder: Path) -> bytes:
    """A deterministic tar.gz of the bundle folder (manifest and every listed file)."""
    manifest = bundle.verify(folder)
    names = sorted({bundle.MANIFEST_NAME, *(f.path for f in manifest.files)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def register(session: Session, blobs: BlobStore, folder: Path, *, actor: str) -> ModelVersion:
    """Verify, pack, store and record a bundle; an already registered version must match."""
    try:
        manifest = bundle.verify(folder)
    except bundle.BundleError as exc:
        raise RegistryError(str(exc)) from None
    if not manifest.model_version:
        raise RegistryError(f"{folder}: the manifest names no model_version")
    archive = pack(folder)
    digest = hashlib.sha256(archive).hexdigest()
    existing = session.get(ModelVersion, manifest.model_version)
    if existing is not None:
        if existing.sha256 != digest:
            raise RegistryError(
                f"model {manifest.model_version} is registered with other content"
                f" (sha256 {existing.sha256[:12]}…)"
            )
        return existing
    key = blobs.put("bundles", archive)
    row = ModelVersion(
        model_version=manifest.model_version,
        sha256=digest,
        size_bytes=len(archive),
        bundle_blob=key,
        manifest=messages.to_json_dict(manifest),
        state="registered",
        registered_by=actor,
        created_at=utcnow(),
    )
    session.add(row)
    audit(
        session,
        actor,
        "model.register",
        manifest.model_version,
        {"sha256": digest, "size_bytes": len(archive), "blob": key},
    )
    return row


def list_models(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())))
