"""The MQTT payload codec: waferscope protobuf messages as canonical proto3 JSON.

Decision (see ``docs/messages.md``): every MQTT payload is the **canonical proto3 JSON mapping**
of its ``waferscope.v1`` message, UTF-8, compact, with every field present (default values
included, so plain-JSON readers always find the same keys). Field names are lowerCamelCase as the
mapping prescribes (``resultId``, ``yieldFraction``); :func:`decode` also accepts the
snake_case proto names. As the mapping prescribes, 64-bit integers (``sequence``, byte counts)
are JSON strings, ``bytes`` are base64, enums are their value names, timestamps are RFC 3339
strings. MES tools and people read these topics, and ~2k messages/s decode comfortably as JSON.
gRPC (TesterIngest, BundleTransfer) carries the same messages as binary protobuf.

Versioning: the major version lives in the proto package (``waferscope.v1``) and the topic root
(``waferscope/v1/...``); a breaking change gets new ones. Within v1 changes are additive only,
and each top-level MQTT message carries ``schemaVersion``, the minor revision its sender was built
with (:data:`SCHEMA_VERSION`; :func:`encode` fills it in when unset). :func:`decode` accepts
any revision of v1: unknown fields (from a newer sender) are ignored, missing ones take their
defaults.

A payload that cannot be decoded raises :class:`MessageError`, naming the topic, the message
type and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import (
    alert_pb2,
    bundle_pb2,
    deploy_pb2,
    device_pb2,
    label_pb2,
    release_pb2,
    result_pb2,
)
from waferscope.protocols.topics import TopicAddress, TopicKind, parse
from waferscope.protocols.wafermap import FAIL_DIE, WaferMap

SCHEMA_VERSION: Final = 1
"""Minor revision of the v1 schema this code writes (bump on every additive .proto change)."""

PROTO_PACKAGE: Final = "waferscope.v1"
"""The proto package of every waferscope message."""

JSON_CONTENT_TYPE: Final = "application/json"
"""Media type of every MQTT payload (the MQTT v5 ``Content Type``; see :func:`content_type`)."""

PROTOBUF_CONTENT_TYPE: Final = "application/x-protobuf"
"""Media type of binary protobuf (gRPC bodies, files that store a message in binary)."""

PAYLOAD_FORMAT_UTF8: Final = 1
"""MQTT v5 ``Payload Format Indicator`` value for UTF-8 text, which every payload is."""

MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
""":func:`decode` refuses larger payloads before parsing them."""

WaferResult: TypeAlias = result_pb2.WaferResult
Alert: TypeAlias = alert_pb2.Alert
DeviceStatus: TypeAlias = device_pb2.DeviceStatus
DeviceBirth: TypeAlias = device_pb2.DeviceBirth
DeployCommand: TypeAlias = deploy_pb2.DeployCommand
DeployAck: TypeAlias = deploy_pb2.DeployAck
BundleManifest: TypeAlias = bundle_pb2.BundleManifest
ShadowReport: TypeAlias = release_pb2.ShadowReport
WaferLabel: TypeAlias = label_pb2.WaferLabel

MqttMessage: TypeAlias = (
    WaferResult
    | Alert
    | DeviceStatus
    | DeviceBirth
    | DeployCommand
    | DeployAck
    | ShadowReport
    | WaferLabel
)
"""Any message that travels on an MQTT topic."""

MessageT = TypeVar("MessageT", bound=Message)

MESSAGE_TYPES: Final[Mapping[TopicKind, type[MqttMessage]]] = MappingProxyType(
    {
        TopicKind.RESULT: WaferResult,
        TopicKind.ALERT: Alert,
        TopicKind.STATUS: DeviceStatus,
        TopicKind.BIRTH: DeviceBirth,
        TopicKind.DEPLOY: DeployCommand,
        TopicKind.DEPLOY_ACK: DeployAck,
        TopicKind.SHADOW_REPORT: ShadowReport,
        TopicKind.LABEL: WaferLabel,
    }
)
"""The payload message of each kind of topic."""

# Fields that must be set for a message to be accepted, and which of them must be UUIDs.
_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "WaferResult": ("result_id", "device_id"),
        "Alert": ("alert_id",),
        "DeviceStatus": ("device_id",),
        "DeviceBirth": ("device_id",),
        "DeployCommand": ("command_id", "device_id"),
        "DeployAck": ("ack_id", "command_id", "device_id"),
        "ShadowReport": ("report_id", "device_id"),
        "WaferLabel": ("label_id", "device_id", "result_id", "pattern"),
    }
)
_UUID_FIELDS: Final = frozenset({"result_id", "alert_id", "command_id", "ack_id", "label_id"})
_SCHEMA_FIELD: Final = "schema_version"


class MessageError(WaferscopeError, ValueError):
    """A message could not be encoded or a payload could not be decoded.

    ``topic`` (when known) and ``message_type`` say which stream and which message; ``reason`` is
    the human sentence.
    """

    def __init__(
        self, reason: str, *, message_type: str | None = None, topic: str | None = None
    ) -> None:
        self.reason = reason
        self.message_type = message_type
        self.topic = topic
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.topic}: " if self.topic else ""
        what = f"{self.message_type} payload" if self.message_type else "payload"
        return f"{where}bad {what}: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:  # keep picklable across process pools
        return (_rebuild_message_error, (type(self), self.reason, self.message_type, self.topic))


def _rebuild_message_error(
    cls: type[MessageError], reason: str, message_type: str | None, topic: str | None
) -> MessageError:
    return cls(reason, message_type=message_type, topic=topic)


# --------------------------------------------------------------------------- ids


def new_message_id() -> str:
    """A new message id: a UUID version 7 (time-ordered, so database indexes stay compact)."""
    unix_ms = time.time_ns() // 1_000_000
    value = (unix_ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def is_message_id(value: str) -> bool:
    """Whether ``value`` is a UUID in its canonical hyphenated form (any version)."""
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, TypeError, AttributeError):
        return False


# --------------------------------------------------------------------------- codec


PayloadEncoding: TypeAlias = Literal["json", "protobuf"]
"""How a payload is written: canonical proto3 JSON (the default, readable by people and MES
tools) or binary protobuf (a few times cheaper to encode and decode, for high-volume result
streams). The MQTT v5 ``Content Type`` of each message says which one it is."""


def content_type(message: Message | type[Message], encoding: PayloadEncoding = "json") -> str:
    """The MQTT v5 content type of a payload: the media type plus the full message name.

    For example ``application/json; proto=waferscope.v1.WaferResult``, or
    ``application/x-protobuf; proto=waferscope.v1.WaferResult`` for a binary payload. Receivers
    must read it to tell binary payloads from JSON (see :func:`decode`).
    """
    media = PROTOBUF_CONTENT_TYPE if encoding == "protobuf" else JSON_CONTENT_TYPE
    return f"{media}; proto={message.DESCRIPTOR.full_name}"


def is_protobuf_content(content_type_value: str | None) -> bool:
    """Whether an MQTT v5 content type names a binary protobuf payload."""
    if not content_type_value:
        return False
    return content_type_value.split(";", 1)[0].strip().lower() == PROTOBUF_CONTENT_TYPE


def to_json_dict(message: Message) -> dict[str, object]:
    """The canonical proto3 JSON mapping of a message as a dict (every field present)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def encode(message: Message, encoding: PayloadEncoding = "json") -> bytes:
    """Encode a message as an MQTT payload: compact canonical JSON (UTF-8), or binary protobuf
    when ``encoding`` is ``"protobuf"``.

    Fills in ``schema_version`` when the message has that field and it is unset (on a copy; the
    caller's message is not changed). Raises :class:`MessageError` when a required id is missing
    or malformed (a result without ``result_id``, a command whose ``command_id`` is no UUID, ...).
    """
    name = message.DESCRIPTOR.name
    _check_required(message, topic=None)
    if _SCHEMA_FIELD in message.DESCRIPTOR.fields_by_name and not getattr(message, _SCHEMA_FIELD):
        stamped = type(message)()
        stamped.CopyFrom(message)
        setattr(stamped, _SCHEMA_FIELD, SCHEMA_VERSION)
        message = stamped
    if encoding == "protobuf":
        return message.SerializeToString()
    try:
        document = to_json_dict(message)
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise MessageError(f"cannot encode: {exc}", message_type=name) from None
    return text.encode("utf-8")


def decode(
    payload: bytes | bytearray | memoryview | str,
    message_type: type[MessageT],
    *,
    topic: str | None = None,
    content_type: str | None = None,
) -> MessageT:
    """Decode an MQTT payload into ``message_type``; raise :class:`MessageError` if it is bad.

    The payload is canonical JSON unless ``content_type`` (the MQTT v5 property) names binary
    protobuf. Unknown fields are ignored (a newer v1 sender may add fields); required ids are
    checked. ``topic`` is only used to name the stream in errors.
    """
    name = message_type.DESCRIPTOR.name
    if is_protobuf_content(content_type) and not isinstance(payload, str):
        return _decode_binary(bytes(payload), message_type, topic=topic)
    if isinstance(payload, str):
        text = payload
    else:
        raw = bytes(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise MessageError(
                f"{len(raw)} bytes is more than the {MAX_PAYLOAD_BYTES}-byte limit",
                message_type=name,
                topic=topic,
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(
                f"not UTF-8 text (byte {exc.start}); payloads are JSON",
                message_type=name,
                topic=topic,
            ) from None
    if len(text) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"{len(text)} characters is more than the {MAX_PAYLOAD_BYTES} limit",
            message_type=name,
            topic=topic,
        )
    if not text.strip():
        raise MessageError("empty payload", message_type=name, topic=topic)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            message_type=name,
            topic=topic,
        ) from None
    except RecursionError:
        raise MessageError("not JSON: nested too deeply", message_type=name, topic=topic) from None
    if not isinstance(document, dict):
        raise MessageError(
            f"expected a JSON object, got {_json_kind(document)}", message_type=name, topic=topic
        )
    message = message_type()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise MessageError(str(exc) or type(exc).__name__, message_type=name, topic=topic) from None
    _check_required(message, topic=topic)
    return message


def _decode_binary(raw: bytes, message_type: type[MessageT], *, topic: str | None) -> MessageT:
    name = message_type.DESCRIPTOR.name
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"{len(raw)} bytes is more than the {MAX_PAYLOAD_BYTES}-byte limit",
            message_type=name,
            topic=topic,
        )
    if not raw:
        raise MessageError("empty payload", message_type=name, topic=topic)
    message = message_type()
    try:
        message.ParseFromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise MessageError(
            f"not a binary {name}: {exc or type(exc).__name__}", message_type=name, topic=topic
        ) from None
    _check_required(message, topic=topic)
    return message


def decode_topic(
    topic: str,
    payload: bytes | bytearray | memoryview | str,
    content_type: str | None = None,
) -> tuple[TopicAddress, MqttMessage]:
    """Parse a topic, decode its payload as the message that topic carries, and cross-check.

    Raises :class:`~waferscope.protocols.errors.TopicError` for a topic that is not a waferscope
    topic and :class:`MessageError` for a bad payload, including one whose ``device_id`` differs
    from the device named in the topic (the topic is what broker ACLs vouch for).
    """
    address = parse(topic)
    message = decode(payload, MESSAGE_TYPES[address.kind], topic=topic, content_type=content_type)
    if message.device_id != address.device_id:
        raise MessageError(
            f"device_id {message.device_id!r} does not match the topic's device"
            f" {address.device_id!r}",
            message_type=message.DESCRIPTOR.name,
            topic=topic,
        )
    return address, message


def _check_required(message: Message, *, topic: str | None) -> None:
    name = message.DESCRIPTOR.name
    for field in _REQUIRED.get(name, ()):
        value = getattr(message, field)
        if not value:
            raise MessageError(f"{field} is missing", message_type=name, topic=topic)
        if field in _UUID_FIELDS and not is_message_id(value):
            raise MessageError(
                f"{field} {value!r} is not a UUID (8-4-4-4-12 hex digits)",
                message_type=name,
                topic=topic,
            )


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# --------------------------------------------------------------------------- device helpers


def last_will(
    device_id: str,
    connection_id: str,
    *,
    connected_at: datetime,
    agent_version: str = "",
    model_version: str = "",
) -> DeviceStatus:
    """The DeviceStatus an edge registers as its MQTT last will when it connects.

    State OFFLINE, cause LAST_WILL, ``since`` = the connect time (the broker publishes the will
    later, unchanged; the hub takes its receive time as the moment the device went away). Publish
    it retained on :func:`~waferscope.protocols.topics.last_will_topic`.
    """
    status = DeviceStatus(
        schema_version=SCHEMA_VERSION,
        device_id=device_id,
        connection_id=connection_id,
        state=device_pb2.DEVICE_STATE_OFFLINE,
        cause=device_pb2.STATUS_CAUSE_LAST_WILL,
        agent_version=agent_version,
        model_version=model_version,
    )
    status.since.FromDatetime(connected_at)
    status.reported_time.FromDatetime(connected_at)
    return status


# --------------------------------------------------------------------------- compact maps

_STATES_PER_BYTE: Final = 4
_RESERVED_STATE: Final = 3


def pack_states(
    grid: npt.ArrayLike, *, origin: tuple[int, int] = (0, 0)
) -> result_pb2.CompactWaferMap:
    """Pack a 0/1/2 dense grid (rows = y, columns = x) into a CompactWaferMap.

    ``origin`` is the (x, y) die coordinate of row 0 / column 0. Two bits per die, row-major,
    first die in the most significant bits of each byte.
    """
    states = np.asarray(grid)
    if states.ndim != 2:
        raise MessageError(f"a wafer grid must be 2-D, got shape {states.shape}")
    if states.size and (int(states.min()) < 0 or int(states.max()) > FAIL_DIE):
        raise MessageError("a wafer grid may hold only 0 (no die), 1 (pass), 2 (fail)")
    rows, cols = states.shape
    flat = states.astype(np.uint8, copy=False).reshape(-1)
    padded = np.zeros(-(-flat.size // _STATES_PER_BYTE) * _STATES_PER_BYTE, dtype=np.uint8)
    padded[: flat.size] = flat
    quads = padded.reshape(-1, _STATES_PER_BYTE)
    packed = (quads[:, 0] << 6) | (quads[:, 1] << 4) | (quads[:, 2] << 2) | quads[:, 3]
    return result_pb2.CompactWaferMap(
        rows=rows,
        cols=cols,
        origin_x=int(origin[0]),
        origin_y=int(origin[1]),
        states=packed.astype(np.uint8).tobytes(),
    )


def unpack_states(compact: result_pb2.CompactWaferMap) -> npt.NDArray[np.uint8]:
    """The dense 0/1/2 grid (rows = y, columns = x) of a CompactWaferMap.

    Raises :class:`MessageError` when the byte count does not fit the shape or a die holds the
    reserved state 3.
    """
    count = compact.rows * compact.cols
    expected = -(-count // _STATES_PER_BYTE)
    if len(compact.states) != expected:
        raise MessageError(
            f"compact map {compact.rows}x{compact.cols} needs {expected} state bytes,"
            f" got {len(compact.states)}",
            message_type="CompactWaferMap",
        )
    packed = np.frombuffer(compact.states, dtype=np.uint8)
    quads = np.stack([(packed >> shift) & 0b11 for shift in (6, 4, 2, 0)], axis=1)
    flat = quads.reshape(-1)[:count]
    if count and int(flat.max()) == _RESERVED_STATE:
        raise MessageError("compact map holds the reserved state 3", message_type="CompactWaferMap")
    return flat.reshape(compact.rows, compact.cols).astype(np.uint8)


def compact_map(wafer: WaferMap) -> result_pb2.CompactWaferMap:
    """The CompactWaferMap of a wafer (its ``to_dense("state")`` grid placed at its extent)."""
    extent = wafer.extent
    origin = (0, 0) if extent is None else (extent[0], extent[1])
    return pack_states(wafer.to_dense("state"), origin=origin)


# --------------------------------------------------------------------------- bundles


def manifest_signing_digest(manifest: BundleManifest) -> bytes:
    """The 32-byte SHA-256 a bundle signature covers.

    It is the digest of the manifest's deterministic binary serialisation with ``signature``
    cleared, so the signature can live inside the manifest it signs.
    """
    unsigned = BundleManifest()
    unsigned.CopyFrom(manifest)
    unsigned.ClearField("signature")
    return hashlib.sha256(unsigned.SerializeToString(deterministic=True)).digest()
