"""Build signed releases: certify a release key with the root key, then sign a bundle folder."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from waferscope.protocols.bundle import read_manifest, sha256_file
from waferscope.protocols.pb.release_pb2 import KeyDelegation, ReleaseManifest, SignedEnvelope
from waferscope.protocols.release import envelope
from waferscope.protocols.release.errors import ReleaseError, ReleaseFormatError
from waferscope.protocols.release.keys import key_id, raw_public
from waferscope.protocols.release.layout import (
    BUNDLE_PREFIX,
    DELEGATION_NAME,
    MAX_FILES,
    RELEASE_NAME,
    SCHEMA_VERSION,
    check_path,
)
from waferscope.protocols.topics import validate_id


def delegate(
    root: Ed25519PrivateKey,
    release_key: Ed25519PublicKey,
    *,
    expires: datetime,
    channels: Sequence[str] = (),
) -> SignedEnvelope:
    """The root's statement that ``release_key`` may sign releases (for ``channels``) until
    ``expires``."""
    doc = KeyDelegation(
        schema_version=SCHEMA_VERSION,
        key_id=key_id(release_key),
        public_key=raw_public(release_key),
        channels=[validate_id(c, "channel") for c in channels],
    )
    doc.issued_time.GetCurrentTime()
    doc.expires_time.FromDatetime(expires.astimezone(UTC))
    return envelope.sign(doc, envelope.DELEGATION_TYPE, root)


def bundle_files(bundle: Path, *, require_bundle: bool = True) -> list[str]:
    """Every regular file under the folder, relative and sorted; links are refused.

    ``require_bundle``: refuse a folder that is not an engine bundle (an edge image's payload
    is not one)."""
    if not bundle.is_dir():
        raise ReleaseFormatError(f"{bundle}: not a folder")
    if require_bundle:
        read_manifest(bundle)
    found: list[str] = []
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle).as_posix()
        if path.is_symlink():
            raise ReleaseFormatError(f"{bundle}: {rel} is a link; a release holds only files")
        if path.is_file():
            found.append(check_path(rel, str(bundle)))
    if len(found) > MAX_FILES:
        raise ReleaseFormatError(f"{bundle}: {len(found)} files, more than {MAX_FILES}")
    return found


def build_release(
    bundle: Path,
    out: Path,
    *,
    key: Ed25519PrivateKey,
    delegation: SignedEnvelope,
    channel: str,
    version: int,
    expires: datetime,
    min_agent_version: str = "",
    model_version: str | None = None,
) -> ReleaseManifest:
    """Sign ``bundle`` as release ``version`` of ``channel`` and write the release file ``out``.

    With ``model_version`` given, ``bundle`` may be any folder (an edge image's payload);
    otherwise it must be an engine bundle, whose model version the manifest repeats."""
    if version < 1:
        raise ReleaseError(f"release version must be a positive integer, got {version}")
    if expires <= datetime.now(UTC):
        raise ReleaseError(f"release expiry {expires.isoformat()} is in the past")
    names = bundle_files(bundle, require_bundle=model_version is None)
    manifest = ReleaseManifest(
        schema_version=SCHEMA_VERSION,
        channel=validate_id(channel, "channel"),
        version=version,
        model_version=read_manifest(bundle).model_version
        if model_version is None
        else model_version,
        min_agent_version=min_agent_version,
    )
    manifest.created_time.GetCurrentTime()
    manifest.expires_time.FromDatetime(expires.astimezone(UTC))
    for rel in names:
        path = bundle / rel
        manifest.files.add(path=rel, sha256=sha256_file(path), size_bytes=path.stat().st_size)
    signed = envelope.sign(manifest, envelope.RELEASE_TYPE, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            (RELEASE_NAME, envelope.to_bytes(signed)),
            (DELEGATION_NAME, envelope.to_bytes(delegation)),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for rel in names:
            info = tar.gettarinfo(str(bundle / rel), arcname=BUNDLE_PREFIX + rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with (bundle / rel).open("rb") as fh:
                tar.addfile(info, fh)
    part.replace(out)
    return manifest
