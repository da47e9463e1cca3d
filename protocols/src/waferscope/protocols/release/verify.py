"""Verify a release file: root-certified key, signature, expiry, version, agent, every file.

Checks, in order, each refusal one typed error (``errors.py``):

1. the file is a plain tar whose first members are ``release.json`` and ``delegation.json``,
   each at most :data:`~layout.MAX_ENVELOPE_BYTES` (``ReleaseFormatError``);
2. the delegation is signed by a trusted root (``UnknownReleaseKeyError`` /
   ``ReleaseSignatureError``) and not expired (``ReleaseKeyExpiredError``);
3. the manifest is signed by the delegated key, for a channel it may sign
   (``UnknownReleaseKeyError`` / ``ReleaseSignatureError``), and is well formed;
4. the manifest has not expired (``ReleaseExpiredError``);
5. its version is above the highest accepted, or equal with the same content
   (``ReleaseDowngradeError``);
6. the agent is at least ``min_agent_version`` (``AgentTooOldError``);
7. the bundle members are exactly the listed files, each with its size and sha256
   (``ReleaseFileError``), streamed — and written under ``extract_to`` when given.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import InvalidVersion, Version

from waferscope.protocols.pb.release_pb2 import KeyDelegation, ReleaseManifest, SignedEnvelope
from waferscope.protocols.release import envelope
from waferscope.protocols.release.errors import (
    AgentTooOldError,
    ReleaseDowngradeError,
    ReleaseExpiredError,
    ReleaseFileError,
    ReleaseFormatError,
    ReleaseKeyExpiredError,
    UnknownReleaseKeyError,
)
from waferscope.protocols.release.keys import public_from_raw
from waferscope.protocols.release.layout import (
    BUNDLE_PREFIX,
    DELEGATION_NAME,
    MAX_ENVELOPE_BYTES,
    MAX_FILES,
    RELEASE_NAME,
    check_path,
    content_digest,
)


@dataclass(frozen=True, slots=True)
class AcceptedRelease:
    """The highest release a verifier has accepted: its version and content digest."""

    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class VerifiedRelease:
    """A release that passed every check."""

    manifest: ReleaseManifest
    key_id: str
    digest: str  # content_digest(manifest)
    bundle_dir: Path | None  # where the bundle was extracted, if asked

    @property
    def version(self) -> int:
        return int(self.manifest.version)

    @property
    def accepted(self) -> AcceptedRelease:
        return AcceptedRelease(self.version, self.digest)


def verify_release(
    path: Path,
    roots: Mapping[str, Ed25519PublicKey],
    *,
    accepted: AcceptedRelease | None = None,
    agent_version: str | None = None,
    extract_to: Path | None = None,
    now: datetime | None = None,
) -> VerifiedRelease:
    """Verify the release file at ``path`` against the trusted ``roots`` (key id → key)."""
    moment = now or datetime.now(UTC)
    where = str(path)
    if extract_to is not None and extract_to.exists() and any(extract_to.iterdir()):
        raise ReleaseFormatError(f"{extract_to}: extraction folder is not empty")
    try:
        with _open(path, where) as tar:
            release_env = _envelope(tar, RELEASE_NAME, where)
            delegation_env = _envelope(tar, DELEGATION_NAME, where)
            manifest, signer = _check_signatures(release_env, delegation_env, roots, moment, where)
            digest = content_digest(manifest)
            _check_policy(manifest, digest, accepted, agent_version, moment, where)
            _check_files(tar, manifest, extract_to, where)
    except BaseException:
        if extract_to is not None:
            shutil.rmtree(extract_to, ignore_errors=True)
        raise
    return VerifiedRelease(manifest, signer, digest, extract_to)


def _open(path: Path, where: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except OSError as exc:
        raise ReleaseFormatError(f"{where}: cannot open ({exc.strerror})") from None
    except tarfile.TarError as exc:
        raise ReleaseFormatError(f"{where}: not a release file (tar: {exc})") from None


def _next(tar: tarfile.TarFile, where: str) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseFormatError(f"{where}: truncated or corrupt release file ({exc})") from None


def _envelope(tar: tarfile.TarFile, name: str, where: str) -> SignedEnvelope:
    member = _next(tar, where)
    if member is None or member.name != name:
        got = "the end" if member is None else repr(member.name[:80])
        raise ReleaseFormatError(f"{where}: expected {name} next, found {got}")
    if not member.isreg():
        raise ReleaseFormatError(f"{where}: {name} is not a regular file")
    if member.size > MAX_ENVELOPE_BYTES:
        raise ReleaseFormatError(
            f"{where}: {name} is {member.size} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit"
        )
    return envelope.from_bytes(_read_member(tar, member, where), f"{where}: {name}")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> bytes:
    try:
        fh = tar.extractfile(member)
        assert fh is not None  # a regular file
        data = fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseFormatError(f"{where}: truncated release file ({exc})") from None
    if len(data) != member.size:
        raise ReleaseFormatError(f"{where}: {member.name} is truncated")
    return data


def _check_signatures(
    release_env: SignedEnvelope,
    delegation_env: SignedEnvelope,
    roots: Mapping[str, Ed25519PublicKey],
    moment: datetime,
    where: str,
) -> tuple[ReleaseManifest, str]:
    delegation, _ = envelope.open_envelope(
        delegation_env,
        envelope.DELEGATION_TYPE,
        roots,
        KeyDelegation(),
        f"{where}: {DELEGATION_NAME}",
    )
    expires = delegation.expires_time.ToDatetime(tzinfo=UTC)
    if not delegation.HasField("expires_time") or expires <= moment:
        raise ReleaseKeyExpiredError(
            f"{where}: release key {delegation.key_id[:16]} expired at {expires.isoformat()}"
        )
    release_key = public_from_raw(delegation.public_key, f"{where}: {DELEGATION_NAME}")
    manifest, signer = envelope.open_envelope(
        release_env,
        envelope.RELEASE_TYPE,
        {delegation.key_id: release_key},
        ReleaseManifest(),
        f"{where}: {RELEASE_NAME}",
    )
    if delegation.channels and manifest.channel not in delegation.channels:
        raise UnknownReleaseKeyError(
            f"{where}: key {signer[:16]} may sign channels {list(delegation.channels)}, "
            f"not {manifest.channel!r}"
        )
    if manifest.version < 1 or not manifest.files or len(manifest.files) > MAX_FILES:
        raise ReleaseFormatError(
            f"{where}: manifest needs a version >= 1 and 1 to {MAX_FILES} files"
        )
    seen: set[str] = set()
    for f in manifest.files:
        check_path(f.path, f"{where}: {RELEASE_NAME}")
        if f.path in seen:
            raise ReleaseFormatError(f"{where}: {RELEASE_NAME} lists {f.path!r} twice")
        seen.add(f.path)
    return manifest, signer


def _check_policy(
    manifest: ReleaseManifest,
    digest: str,
    accepted: AcceptedRelease | None,
    agent_version: str | None,
    moment: datetime,
    where: str,
) -> None:
    expires = manifest.expires_time.ToDatetime(tzinfo=UTC)
    if not manifest.HasField("expires_time") or expires <= moment:
        raise ReleaseExpiredError(
            f"{where}: release {manifest.version} expired at {expires.isoformat()}"
        )
    if accepted is not None:
        if manifest.version < accepted.version:
            raise ReleaseDowngradeError(
                f"{where}: release {manifest.version} is older than the accepted "
                f"release {accepted.version}"
            )
        if manifest.version == accepted.version and digest != accepted.digest:
            raise ReleaseDowngradeError(
                f"{where}: release {manifest.version} was accepted before with other content"
            )
    if manifest.min_agent_version and agent_version is not None:
        try:
            too_old = Version(agent_version) < Version(manifest.min_agent_version)
        except InvalidVersion as exc:
            raise ReleaseFormatError(f"{where}: {exc}") from None
        if too_old:
            raise AgentTooOldError(
                f"{where}: release {manifest.version} needs agent "
                f">= {manifest.min_agent_version}, this agent is {agent_version}"
            )


def _check_files(
    tar: tarfile.TarFile, manifest: ReleaseManifest, extract_to: Path | None, where: str
) -> None:
    listed = {f.path: f for f in manifest.files}
    done: set[str] = set()
    while (member := _next(tar, where)) is not None:
        if not member.name.startswith(BUNDLE_PREFIX):
            raise ReleaseFormatError(f"{where}: unexpected member {member.name[:80]!r}")
        rel = check_path(member.name[len(BUNDLE_PREFIX) :], where)
        if not member.isreg():
            raise ReleaseFormatError(f"{where}: {member.name} is a link or special file")
        if rel in done:
            raise ReleaseFileError(f"{where}: {rel} appears twice")
        entry = listed.get(rel)
        if entry is None:
            raise ReleaseFileError(f"{where}: {rel} is not listed in the signed manifest")
        if member.size != entry.size_bytes:
            raise ReleaseFileError(
                f"{where}: {rel} is {member.size} bytes, the manifest says {entry.size_bytes}"
            )
        got = _copy_hashing(tar, member, None if extract_to is None else extract_to / rel, where)
        if got != entry.sha256:
            raise ReleaseFileError(f"{where}: {rel} sha256 {got[:12]}… differs from the manifest")
        done.add(rel)
    missing = sorted(set(listed) - done)
    if missing:
        raise ReleaseFileError(f"{where}: listed file(s) missing: {', '.join(missing[:5])}")


def _copy_hashing(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path | None, where: str
) -> str:
    digest = hashlib.sha256()
    out: IO[bytes] | None = None
    try:
        src = tar.extractfile(member)
        assert src is not None
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            out = dest.open("xb")
        size = 0
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseFormatError(f"{where}: truncated release file ({exc})") from None
    finally:
        if out is not None:
            out.close()
    if size != member.size:
        raise ReleaseFormatError(f"{where}: {member.name} is truncated")
    return digest.hexdigest()
