"""The typed refusals of release signing and verification: one class per reason."""

from __future__ import annotations

from waferscope.protocols.errors import WaferscopeError


class ReleaseError(WaferscopeError):
    """Base class: a release (or a key) was refused; the message names the file and the reason."""


class ReleaseFormatError(ReleaseError):
    """The release file is not a well-formed release: not a tar, truncated, a corrupt or oversized
    envelope or manifest, a link or a path escaping the bundle, too many files."""


class ReleaseSignatureError(ReleaseError):
    """A signature does not verify: the manifest or the key delegation was altered or forged."""


class UnknownReleaseKeyError(ReleaseError):
    """The release is signed by a key no trusted root certified (or not for this channel)."""


class ReleaseKeyExpiredError(ReleaseError):
    """The release key's delegation from the root key has expired."""


class ReleaseExpiredError(ReleaseError):
    """The release manifest's expiry has passed (freeze-attack protection)."""


class ReleaseDowngradeError(ReleaseError):
    """The release version is lower than the highest accepted one, or equal with other content
    (rollback / replay protection)."""


class ReleaseFileError(ReleaseError):
    """A bundle file in the release is tampered with (size or sha256), missing, or not listed."""


class AgentTooOldError(ReleaseError):
    """The release needs a newer edge agent than the one installing it."""


class ReleaseKeyError(ReleaseError):
    """A key file cannot be read as the expected Ed25519 private or public key."""
