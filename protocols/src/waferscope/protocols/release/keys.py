"""Ed25519 keys for releases: generate, store as PEM, load, and name them by fingerprint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from waferscope.protocols.release.errors import ReleaseKeyError

MAX_KEY_FILE_BYTES = 16 * 1024


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A key's name in signatures and delegations: hex SHA-256 of its raw public bytes."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def public_from_raw(data: bytes, where: str) -> Ed25519PublicKey:
    if len(data) != 32:
        raise ReleaseKeyError(f"{where}: an Ed25519 public key has 32 bytes, not {len(data)}")
    return Ed25519PublicKey.from_public_bytes(data)


def generate(out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.pub`` (SPKI PEM) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists():
            raise ReleaseKeyError(f"{path}: exists already; refusing to overwrite a key")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise ReleaseKeyError(f"{path}: too large for a key file")
        return path.read_bytes()
    except OSError as exc:
        raise ReleaseKeyError(f"{path}: cannot read the key file ({exc.strerror})") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file written by :func:`generate`."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ReleaseKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseKeyError(f"{path}: holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file written by :func:`generate`."""
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ReleaseKeyError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseKeyError(f"{path}: holds a {type(key).__name__}, not an Ed25519 key")
    return key


def trusted_roots(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Root public keys by key id, from PEM files (an edge's ``[release] trusted_root_keys``)."""
    return {key_id(k): k for k in (load_public(p) for p in paths)}
