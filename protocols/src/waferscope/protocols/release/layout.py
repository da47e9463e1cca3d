"""The release file layout and its limits, shared by the builder and the verifier."""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Final

from waferscope.protocols.pb.release_pb2 import ReleaseManifest
from waferscope.protocols.release.errors import ReleaseFormatError

RELEASE_NAME: Final = "release.json"
DELEGATION_NAME: Final = "delegation.json"
BUNDLE_PREFIX: Final = "bundle/"
SUFFIX: Final = ".wsrelease"
SCHEMA_VERSION: Final = 1

MAX_ENVELOPE_BYTES: Final = 1 << 20
"""Largest release.json / delegation.json accepted (a huge manifest is refused unread)."""
MAX_FILES: Final = 512
"""Most bundle files a release may list (and tar members it may hold, plus the two envelopes)."""


def check_path(rel: str, where: str) -> str:
    """A bundle file path: relative, '/'-separated, no '..', no empty or '.' parts."""
    p = PurePosixPath(rel)
    bad = (
        not rel
        or len(rel) > 255
        or p.is_absolute()
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("..", ".", "") for part in rel.split("/"))
    )
    if bad:
        raise ReleaseFormatError(f"{where}: file name {rel[:80]!r} is not a safe relative path")
    return rel


def content_digest(manifest: ReleaseManifest) -> str:
    """What "the same release content" means: SHA-256 over channel, model and every file."""
    digest = hashlib.sha256()
    digest.update(f"{manifest.channel}\n{manifest.model_version}\n".encode())
    for f in sorted(manifest.files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.sha256}\0{f.size_bytes}\n".encode())
    return digest.hexdigest()
