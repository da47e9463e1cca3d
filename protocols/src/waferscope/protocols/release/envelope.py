"""Signed envelopes: canonical JSON payloads signed with Ed25519 over the DSSE encoding.

The signature covers ``PAE(payload_type, payload)`` — ``b"DSSEv1 <len> <type> <len> <payload>"``
as in the DSSE specification — so the verifier checks the exact bytes that were signed, and a
payload cannot be replayed as another type (a delegation as a release). The payload is the
message's canonical JSON: proto3 JSON field names, keys sorted, no spaces, UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from waferscope.protocols.pb.release_pb2 import SignedEnvelope
from waferscope.protocols.release.errors import (
    ReleaseFormatError,
    ReleaseSignatureError,
    UnknownReleaseKeyError,
)
from waferscope.protocols.release.keys import key_id

RELEASE_TYPE: Final = "application/vnd.waferscope.release+json"
DELEGATION_TYPE: Final = "application/vnd.waferscope.delegation+json"
ALGORITHM: Final = "ed25519"

M = TypeVar("M", bound=Message)


def canonical_json(message: Message) -> bytes:
    """The canonical bytes of a message: sorted keys, no whitespace, UTF-8."""
    doc = json_format.MessageToDict(message, preserving_proto_field_name=False)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding of (type, payload)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign(message: Message, payload_type: str, key: Ed25519PrivateKey) -> SignedEnvelope:
    """An envelope holding ``message`` signed by ``key``."""
    payload = canonical_json(message)
    envelope = SignedEnvelope(payload_type=payload_type, payload=payload)
    signature = envelope.signatures.add()
    signature.algorithm = ALGORITHM
    signature.key_id = key_id(key.public_key())
    signature.value = key.sign(pae(payload_type, payload))
    signature.signed_time.GetCurrentTime()
    return envelope


def to_bytes(envelope: SignedEnvelope) -> bytes:
    return (json_format.MessageToJson(envelope, indent=1, sort_keys=True) + "\n").encode()


def from_bytes(data: bytes, where: str) -> SignedEnvelope:
    envelope = SignedEnvelope()
    try:
        json_format.Parse(data.decode("utf-8"), envelope)
    except (json_format.ParseError, UnicodeDecodeError, ValueError, DecodeError) as exc:
        raise ReleaseFormatError(f"{where}: not a signed envelope ({_short(exc)})") from None
    return envelope


def open_envelope(
    envelope: SignedEnvelope,
    payload_type: str,
    keys: Mapping[str, Ed25519PublicKey],
    message: M,
    where: str,
) -> tuple[M, str]:
    """Verify one signature by one of ``keys`` and parse the payload: (message, key id)."""
    if envelope.payload_type != payload_type:
        raise ReleaseFormatError(
            f"{where}: payload type {envelope.payload_type!r}, expected {payload_type!r}"
        )
    if not envelope.signatures:
        raise ReleaseSignatureError(f"{where}: carries no signature")
    known = [s for s in envelope.signatures if s.key_id in keys]
    if not known:
        ids = ", ".join(s.key_id[:16] for s in envelope.signatures)
        raise UnknownReleaseKeyError(f"{where}: signed by unknown key(s) {ids}")
    signed = pae(envelope.payload_type, envelope.payload)
    for signature in known:
        if signature.algorithm != ALGORITHM:
            continue
        try:
            keys[signature.key_id].verify(signature.value, signed)
        except InvalidSignature:
            continue
        try:
            json_format.Parse(envelope.payload.decode("utf-8"), message)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            raise ReleaseFormatError(
                f"{where}: signed payload unreadable ({_short(exc)})"
            ) from None
        return message, signature.key_id
    raise ReleaseSignatureError(
        f"{where}: the {ALGORITHM} signature by key {known[0].key_id[:16]} does not verify"
    )


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
