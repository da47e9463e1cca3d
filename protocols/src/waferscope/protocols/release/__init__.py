"""Signed engine releases: an engine bundle plus a root-certified, Ed25519-signed manifest.

``keys`` makes and loads keys, ``build`` certifies a release key and signs a bundle into one
release file, ``verify`` checks one (every refusal a typed error from ``errors``), ``golden``
holds the parity set an edge checks a new engine against. The layout is in ``layout`` and in
``pb/release.proto``.
"""

from waferscope.protocols.release.build import build_release, bundle_files, delegate
from waferscope.protocols.release.errors import (
    AgentTooOldError,
    ReleaseDowngradeError,
    ReleaseError,
    ReleaseExpiredError,
    ReleaseFileError,
    ReleaseFormatError,
    ReleaseKeyError,
    ReleaseKeyExpiredError,
    ReleaseSignatureError,
    UnknownReleaseKeyError,
)
from waferscope.protocols.release.keys import (
    generate,
    key_id,
    load_private,
    load_public,
    trusted_roots,
)
from waferscope.protocols.release.layout import SUFFIX, content_digest
from waferscope.protocols.release.verify import AcceptedRelease, VerifiedRelease, verify_release

__all__ = [
    "SUFFIX",
    "AcceptedRelease",
    "AgentTooOldError",
    "ReleaseDowngradeError",
    "ReleaseError",
    "ReleaseExpiredError",
    "ReleaseFileError",
    "ReleaseFormatError",
    "ReleaseKeyError",
    "ReleaseKeyExpiredError",
    "ReleaseSignatureError",
    "UnknownReleaseKeyError",
    "VerifiedRelease",
    "build_release",
    "bundle_files",
    "content_digest",
    "delegate",
    "generate",
    "key_id",
    "load_private",
    "load_public",
    "trusted_roots",
    "verify_release",
]
