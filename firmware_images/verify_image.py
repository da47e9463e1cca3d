#!/usr/bin/env python3
"""Verify (and unpack) a signed waferscope release on a bare box: Python stdlib + openssl only.

An edge image is installed where nothing of waferscope (nor the `cryptography` package) exists
yet, so this script checks a release file with what every Debian/Ubuntu box has: Python 3.11's
standard library and the `openssl` command (Ed25519 via `openssl pkeyutl -rawin`, OpenSSL >= 3).
It applies the rules of `waferscope.protocols.release.verify` (the reference implementation, used
everywhere else; the tests check that both agree): the delegation is signed by the given root
key and not expired, the manifest is signed by the delegated key and not expired, and the
members are exactly the listed files with their sizes and SHA-256 — written under --extract only
as they are checked, removed again on any failure. The file may be the release itself or a whole
edge image tar (the release is then its ``image.wsrelease`` member, read in place).

    python3 verify_image.py --root root.pub image.wsrelease [--extract DIR]
    python3 verify_image.py --root root.pub waferscope-edge-image-12.tar [--extract DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

MAX_ENVELOPE_BYTES = 1 << 20
RELEASE_TYPE = "application/vnd.waferscope.release+json"
DELEGATION_TYPE = "application/vnd.waferscope.delegation+json"
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # DER SubjectPublicKeyInfo, Ed25519


class ImageRefusedError(Exception):
    """The release is refused; the message says why."""


def pem_to_raw(pem: str) -> bytes:
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    der = base64.b64decode(body)
    if len(der) != 44 or not der.startswith(SPKI_PREFIX):
        raise ImageRefusedError("the root key is not an Ed25519 public key (PEM)")
    return der[12:]


def raw_to_pem(raw: bytes) -> str:
    b64 = base64.b64encode(SPKI_PREFIX + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def openssl_verify(pem: str, message: bytes, signature: bytes) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        key, msg, sig = Path(tmp, "k.pem"), Path(tmp, "m"), Path(tmp, "s")
        key.write_text(pem)
        msg.write_bytes(message)
        sig.write_bytes(signature)
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin"]
        done = subprocess.run(
            [*cmd, "-in", str(msg), "-sigfile", str(sig)], check=False, capture_output=True
        )
        return done.returncode == 0


def open_envelope(data: bytes, payload_type: str, key_id: str, pem: str, what: str) -> dict:
    try:
        env = json.loads(data)
        payload = base64.b64decode(env["payload"])
        sigs = env.get("signatures", [])
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageRefusedError(f"{what}: not a signed envelope ({exc})") from None
    if env.get("payloadType") != payload_type:
        raise ImageRefusedError(f"{what}: payload type {env.get('payloadType')!r}")
    mine = [s for s in sigs if s.get("keyId") == key_id and s.get("algorithm") == "ed25519"]
    if not mine:
        raise ImageRefusedError(f"{what}: signed by unknown key(s)")
    if not any(
        openssl_verify(pem, pae(payload_type, payload), base64.b64decode(s["value"])) for s in mine
    ):
        raise ImageRefusedError(f"{what}: the ed25519 signature does not verify")
    return json.loads(payload)


def expired(doc: dict, now: datetime) -> bool:
    text = doc.get("expiresTime", "")
    when = datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    return when is None or when <= now


def safe(rel: str) -> str:
    parts = rel.split("/")
    if (
        not rel
        or PurePosixPath(rel).is_absolute()
        or "\\" in rel
        or "\x00" in rel
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ImageRefusedError(f"file name {rel[:80]!r} is not a safe relative path")
    return rel


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.next()
    if member is None or member.name != name or not member.isreg():
        raise ImageRefusedError(f"expected {name} next")
    if member.size > MAX_ENVELOPE_BYTES:
        raise ImageRefusedError(f"{name} is over the {MAX_ENVELOPE_BYTES}-byte limit")
    fh = tar.extractfile(member)
    assert fh is not None
    return fh.read()


IMAGE_MEMBER = "image.wsrelease"


def verify(path: Path, root_pem: str, extract: Path | None) -> dict:
    """The signed manifest of the release (or image tar) at ``path``, every file checked."""
    with tarfile.open(path, "r:") as tar:
        first = tar.next()
    if first is None or first.name == "release.json":
        with tarfile.open(path, "r:") as tar:
            return verify_release(tar, root_pem, extract)
    with tarfile.open(path, "r:") as outer:
        for member in outer:
            if member.name == IMAGE_MEMBER and member.isreg():
                inner = outer.extractfile(member)
                assert inner is not None
                with tarfile.open(fileobj=inner, mode="r:") as tar:
                    return verify_release(tar, root_pem, extract)
    raise ImageRefusedError(f"neither a release nor an image holding {IMAGE_MEMBER}")


def verify_release(tar: tarfile.TarFile, root_pem: str, extract: Path | None) -> dict:
    """Check one release read from ``tar`` (positioned at its start)."""
    now = datetime.now(UTC)
    root_raw = pem_to_raw(root_pem)
    root_id = hashlib.sha256(root_raw).hexdigest()
    release = read_member(tar, "release.json")
    delegation = open_envelope(
        read_member(tar, "delegation.json"), DELEGATION_TYPE, root_id, root_pem, "delegation"
    )
    if expired(delegation, now):
        raise ImageRefusedError("the release key's delegation has expired")
    key_raw = base64.b64decode(delegation["publicKey"])
    manifest = open_envelope(
        release,
        RELEASE_TYPE,
        hashlib.sha256(key_raw).hexdigest(),
        raw_to_pem(key_raw),
        "release",
    )
    channels = delegation.get("channels", [])
    if channels and manifest.get("channel") not in channels:
        raise ImageRefusedError("the release key may not sign this channel")
    if expired(manifest, now):
        raise ImageRefusedError(f"release {manifest.get('version')} has expired")
    listed = {safe(f["path"]): f for f in manifest.get("files", [])}
    done: set[str] = set()
    while (member := tar.next()) is not None:
        if not member.name.startswith("bundle/") or not member.isreg():
            raise ImageRefusedError(f"unexpected member {member.name[:80]!r}")
        rel = safe(member.name[len("bundle/") :])
        entry = listed.get(rel)
        if entry is None or rel in done:
            raise ImageRefusedError(f"{rel} is not listed in the signed manifest (or twice)")
        if member.size != int(entry["sizeBytes"]):
            raise ImageRefusedError(f"{rel} has the wrong size")
        src = tar.extractfile(member)
        assert src is not None
        digest = hashlib.sha256()
        out = None
        if extract is not None:
            (extract / rel).parent.mkdir(parents=True, exist_ok=True)
            out = (extract / rel).open("xb")
        try:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            if out is not None:
                out.close()
        if digest.hexdigest() != entry["sha256"]:
            raise ImageRefusedError(f"{rel} sha256 differs from the signed manifest")
        done.add(rel)
    if set(listed) - done:
        raise ImageRefusedError(
            f"listed file(s) missing: {', '.join(sorted(set(listed) - done)[:5])}"
        )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", type=Path)
    parser.add_argument("--root", type=Path, required=True, help="trusted root public key (PEM)")
    parser.add_argument("--extract", type=Path, help="unpack the verified files here (new folder)")
    args = parser.parse_args(argv)
    if args.extract is not None and args.extract.exists() and any(args.extract.iterdir()):
        print(f"verify_image: {args.extract} is not empty", file=sys.stderr)
        return 1
    try:
        manifest = verify(args.release, args.root.read_text(), args.extract)
    except (ImageRefusedError, OSError, tarfile.TarError, EOFError, KeyError, ValueError) as exc:
        if args.extract is not None:
            shutil.rmtree(args.extract, ignore_errors=True)
        print(f"verify_image: {args.release}: refused: {exc}", file=sys.stderr)
        return 1
    print(
        f"verified release {manifest.get('version')} ({manifest.get('channel')}), "
        f"{len(manifest.get('files', []))} files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
