"""The .proto contracts: generated code is fresh, every message survives the MQTT codec, bad
payloads raise one typed error, and the gRPC stubs talk to a real server on loopback."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from waferscope.protocols import messages, topics
from waferscope.protocols.errors import TopicError, WaferscopeError
from waferscope.protocols.messages import MessageError
from waferscope.protocols.pb import (
    alert_pb2,
    bundle_pb2,
    common_pb2,
    deploy_pb2,
    device_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    label_pb2,
    release_pb2,
    result_pb2,
    transfer_pb2,
    transfer_pb2_grpc,
)
from waferscope.protocols.topics import TopicKind
from waferscope.protocols.wafermap import Provenance, WaferMap

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "protocols" / "proto" / "waferscope" / "protocols" / "pb"
PB_DIR = REPO_ROOT / "protocols" / "src" / "waferscope" / "protocols" / "pb"
PB_MODULES: list[ModuleType] = [
    alert_pb2,
    bundle_pb2,
    common_pb2,
    deploy_pb2,
    device_pb2,
    ingest_pb2,
    label_pb2,
    release_pb2,
    result_pb2,
    transfer_pb2,
]
MQTT_TYPES = list(messages.MESSAGE_TYPES.values())


# --------------------------------------------------------------------------- freshness


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "check-protos.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@needs_bash
def test_generated_code_is_fresh() -> None:
    result = run_check()
    assert result.returncode == 0, (
        "generated protobuf code is stale; run `just protos`\n" + result.stdout + result.stderr
    )


@needs_bash
def test_freshness_check_names_stale_missing_and_orphaned_files(tmp_path: Path) -> None:
    committed = tmp_path / "pb"
    shutil.copytree(PB_DIR, committed)
    with (committed / "alert_pb2.py").open("a") as handle:
        handle.write("# hand edit\n")
    (committed / "bundle_pb2.pyi").unlink()
    (committed / "retired_pb2.py").write_text("# left over from a deleted .proto\n")
    result = run_check(str(committed))
    assert result.returncode == 1
    assert "stale:" in result.stdout and "alert_pb2.py" in result.stdout
    assert "missing:" in result.stdout and "bundle_pb2.pyi" in result.stdout
    assert "orphan:" in result.stdout and "retired_pb2.py" in result.stdout
    assert "just protos" in result.stdout


def test_every_proto_has_generated_modules() -> None:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    assert protos
    for proto in protos:
        assert (PB_DIR / f"{proto.stem}_pb2.py").is_file(), proto.name
        assert (PB_DIR / f"{proto.stem}_pb2.pyi").is_file(), proto.name
        module = importlib.import_module(f"waferscope.protocols.pb.{proto.stem}_pb2")
        assert module.DESCRIPTOR.package == messages.PROTO_PACKAGE
        has_service = bool(module.DESCRIPTOR.services_by_name)
        assert (PB_DIR / f"{proto.stem}_pb2_grpc.py").is_file() is has_service, proto.name
    assert {m.__name__.rsplit(".", 1)[1] for m in PB_MODULES} == {f"{p.stem}_pb2" for p in protos}


# --------------------------------------------------------------------------- sample messages


def all_message_types() -> list[type[Message]]:
    found: list[type[Message]] = []

    def walk(descriptor: Descriptor, module: ModuleType) -> None:
        if descriptor.GetOptions().map_entry:
            return
        found.append(message_class(descriptor))
        for nested in descriptor.nested_types:
            walk(nested, module)

    for module in PB_MODULES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor, module)
    return found


def message_class(descriptor: Descriptor) -> type[Message]:
    module = importlib.import_module(
        "waferscope.protocols.pb." + Path(descriptor.file.name).stem + "_pb2"
    )
    cls = getattr(module, descriptor.name)
    assert isinstance(cls, type)
    return cls


def scalar_sample(field: FieldDescriptor, ordinal: int) -> Any:
    """A value for a scalar field that survives JSON exactly (floats are binary fractions)."""
    if field.name in {
        "result_id",
        "alert_id",
        "command_id",
        "ack_id",
        "label_id",
    } or field.name.endswith("result_ids"):
        return str(uuid.UUID(int=(ordinal + 1) * 0x1234567, version=4))
    if field.name == "device_id":
        return "edge-01"
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return bytes([0, 1, 2, 255, ordinal % 256])
        return f"{field.name}-{ordinal} µ"
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return True
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        assert field.enum_type is not None
        return field.enum_type.values[-1].number
    if kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return 0.5 + ordinal / 4
    if kind in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
        return -(ordinal + 3) if field.name.startswith(("origin", "x_", "y_")) else ordinal + 3
    if kind == FieldDescriptor.CPPTYPE_UINT64:
        return 2**53 + ordinal  # beyond float precision: proves int64-as-string survives
    return ordinal + 3


def populate(message: Message, depth: int = 0) -> Message:
    """Set every field of a message (recursively; one member per oneof)."""
    seen_oneofs: set[str] = set()
    fields = cast(list[FieldDescriptor], list(message.DESCRIPTOR.fields))
    for ordinal, field in enumerate(fields):
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for index in range(2):
                target[f"key-{index}"] = scalar_sample(value_field, index)
            assert key_field.cpp_type == FieldDescriptor.CPPTYPE_STRING
        elif field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                stamp = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
                if field.is_repeated:
                    target.add().FromDatetime(stamp)
                else:
                    target.FromDatetime(stamp)
            elif field.is_repeated:
                for _ in range(2):
                    populate(target.add(), depth + 1)
            else:
                populate(target, depth + 1)
        elif field.is_repeated:
            target.extend(scalar_sample(field, ordinal + i) for i in range(3))
        else:
            setattr(message, field.name, scalar_sample(field, ordinal))
    return message


ALL_TYPES = all_message_types()


def test_every_mqtt_message_starts_with_schema_version_and_names_its_device() -> None:
    for cls in MQTT_TYPES:
        fields = cls.DESCRIPTOR.fields_by_name
        assert fields["schema_version"].number == 1, cls.DESCRIPTOR.name
        assert "device_id" in fields, cls.DESCRIPTOR.name
    assert bundle_pb2.BundleManifest.DESCRIPTOR.fields_by_name["schema_version"].number == 1


def test_topic_specs_and_message_types_agree() -> None:
    for kind, spec in topics.TOPIC_SPECS.items():
        assert messages.MESSAGE_TYPES[kind].DESCRIPTOR.name == spec.message


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.DESCRIPTOR.name)
def test_every_message_round_trips_through_json_and_binary(cls: type[Message]) -> None:
    original = populate(cls())
    if "schema_version" in cls.DESCRIPTOR.fields_by_name:
        original.schema_version = messages.SCHEMA_VERSION  # type: ignore[attr-defined]
    payload = messages.encode(original)
    assert messages.decode(payload, cls) == original
    assert cls.FromString(original.SerializeToString()) == original


@pytest.mark.parametrize(
    "cls", [c for c in ALL_TYPES if c not in MQTT_TYPES], ids=lambda c: c.DESCRIPTOR.name
)
def test_empty_messages_round_trip(cls: type[Message]) -> None:
    decoded = messages.decode(messages.encode(cls()), cls)
    if "schema_version" in cls.DESCRIPTOR.fields_by_name:
        assert decoded.schema_version == messages.SCHEMA_VERSION  # type: ignore[attr-defined]
        decoded.ClearField("schema_version")
    assert decoded == cls()


def sample_result() -> result_pb2.WaferResult:
    result = populate(result_pb2.WaferResult())
    assert isinstance(result, result_pb2.WaferResult)
    result.schema_version = 0
    return result


def test_payload_is_compact_canonical_json_with_every_key() -> None:
    result = result_pb2.WaferResult(result_id=messages.new_message_id(), device_id="edge-01")
    result.sequence = 7
    payload = messages.encode(result)
    text = payload.decode("utf-8")
    assert ": " not in text and ", " not in text
    document = json.loads(text)
    assert document["schemaVersion"] == messages.SCHEMA_VERSION
    assert document["resultId"] == result.result_id
    assert document["sequence"] == "7"  # canonical: 64-bit integers are strings
    assert document["reviewRequired"] is False  # defaults are printed, keys are stable
    assert document["reviewReason"] == "REVIEW_REASON_UNSPECIFIED"
    assert "pattern" not in document  # unset sub-messages stay absent
    assert document["embedding"] == []


def test_encode_stamps_schema_version_without_touching_the_caller() -> None:
    result = sample_result()
    decoded = messages.decode(messages.encode(result), result_pb2.WaferResult)
    assert decoded.schema_version == messages.SCHEMA_VERSION
    assert result.schema_version == 0
    result.schema_version = 9  # a newer sender's revision is kept as is
    assert messages.decode(messages.encode(result), result_pb2.WaferResult).schema_version == 9


def test_decode_accepts_proto_field_names_and_ignores_unknown_fields() -> None:
    result_id = messages.new_message_id()
    document = {
        "result_id": result_id,
        "device_id": "edge-01",
        "sequence": 3,
        "review_required": True,
        "fieldFromTheFuture": {"x": 1},
    }
    decoded = messages.decode(json.dumps(document).encode(), result_pb2.WaferResult)
    assert decoded.result_id == result_id
    assert decoded.sequence == 3
    assert decoded.review_required


def test_non_finite_floats_use_the_canonical_strings() -> None:
    result = result_pb2.WaferResult(result_id=messages.new_message_id(), device_id="e")
    result.confidence = float("nan")
    result.yield_fraction = float("inf")
    payload = messages.encode(result)
    assert b'"confidence":"NaN"' in payload and b'"yieldFraction":"Infinity"' in payload
    decoded = messages.decode(payload, result_pb2.WaferResult)
    assert np.isnan(decoded.confidence) and decoded.yield_fraction == float("inf")


# --------------------------------------------------------------------------- bad payloads

TOPIC = "waferscope/v1/_/edge-01/result"
GOOD_ID = "0190f2a4-7b1c-7d2e-8f00-0123456789ab"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty payload"),
        (b"   ", "empty payload"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b'"text"', "got a string"),
        (b"42", "got a number"),
        (b"null", "got null"),
        (b'{"deviceId": "edge-01"}', "result_id is missing"),
        (b'{"resultId": "r-1", "deviceId": "edge-01"}', "not a UUID"),
        (b'{"resultId": "%s"}' % GOOD_ID.encode(), "device_id is missing"),
        (b'{"resultId": "%s", "deviceId": "e", "dieCount": "many"}' % GOOD_ID.encode(), "dieCount"),
        (b'{"resultId": "%s", "deviceId": "e", "dieCount": -1}' % GOOD_ID.encode(), "dieCount"),
        (
            b'{"resultId": "%s", "deviceId": "e", "reviewReason": [1]}' % GOOD_ID.encode(),
            "reviewReason",
        ),
        (b'{"resultId": "%s", "deviceId": "e", "map": [1]}' % GOOD_ID.encode(), "map"),
        (
            b'{"resultId": "%s", "deviceId": "e", "receivedTime": "yesterday"}' % GOOD_ID.encode(),
            "receivedTime",
        ),
        (b'{"resultId": "%s", "deviceId": "e", "map": {"states": 5}}' % GOOD_ID.encode(), ""),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"a":' * 200 + b"1" + b"}" * 200, ""),
    ],
)
def test_bad_payloads_raise_message_error_naming_topic_and_type(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(MessageError) as caught:
        messages.decode(payload, result_pb2.WaferResult, topic=TOPIC)
    text = str(caught.value)
    assert text.startswith(f"{TOPIC}: bad WaferResult payload: ")
    assert reason in text
    assert caught.value.topic == TOPIC
    assert caught.value.message_type == "WaferResult"
    assert isinstance(caught.value, WaferscopeError)


def test_oversized_payloads_are_refused_before_parsing() -> None:
    payload = b" " * (messages.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(MessageError, match="limit"):
        messages.decode(payload, result_pb2.WaferResult)
    with pytest.raises(MessageError, match="limit"):
        messages.decode(payload.decode(), result_pb2.WaferResult)


def test_unknown_enum_names_are_refused_or_ignored_but_never_crash() -> None:
    payload = b'{"resultId": "%s", "deviceId": "e", "reviewReason": "NEW"}' % GOOD_ID.encode()
    try:
        decoded = messages.decode(payload, result_pb2.WaferResult)
    except MessageError:
        return
    assert decoded.review_reason == result_pb2.REVIEW_REASON_UNSPECIFIED


def test_encode_refuses_messages_without_their_ids() -> None:
    with pytest.raises(MessageError, match="result_id is missing"):
        messages.encode(result_pb2.WaferResult(device_id="edge-01"))
    with pytest.raises(MessageError, match="not a UUID"):
        messages.encode(deploy_pb2.DeployCommand(command_id="cmd-1", device_id="edge-01"))


def test_message_error_pickles() -> None:
    error = MessageError("boom", message_type="Alert", topic="t")
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, MessageError)
    assert str(clone) == str(error) == "t: bad Alert payload: boom"


# --------------------------------------------------------------------------- topic + payload


@pytest.mark.parametrize("kind", list(TopicKind))
def test_decode_topic_picks_the_message_of_the_topic(kind: TopicKind) -> None:
    cls = messages.MESSAGE_TYPES[kind]
    message = populate(cls())
    topic = topics.topic_name(kind, "edge-01", site="fab3")
    address, decoded = messages.decode_topic(topic, messages.encode(message))
    assert address == topics.TopicAddress(kind, "fab3", "edge-01")
    assert isinstance(decoded, cls)
    message.schema_version = decoded.schema_version  # type: ignore[attr-defined]
    assert decoded == message


def test_decode_topic_refuses_a_payload_for_another_device() -> None:
    result = sample_result()
    with pytest.raises(MessageError, match="does not match the topic's device"):
        messages.decode_topic(topics.result_topic("edge-02"), messages.encode(result))


def test_decode_topic_refuses_foreign_topics() -> None:
    with pytest.raises(TopicError):
        messages.decode_topic("$SYS/broker/load", b"{}")


def test_decode_topic_refuses_the_wrong_message_for_the_topic() -> None:
    status = device_pb2.DeviceStatus(device_id="edge-01")
    with pytest.raises(MessageError, match="WaferResult"):
        messages.decode_topic(topics.result_topic("edge-01"), messages.encode(status))


# --------------------------------------------------------------------------- helpers


def test_content_type_names_the_message() -> None:
    assert (
        messages.content_type(result_pb2.WaferResult)
        == "application/json; proto=waferscope.v1.WaferResult"
    )
    assert messages.content_type(alert_pb2.Alert()).endswith("waferscope.v1.Alert")


def test_new_message_ids_are_uuid7_and_time_ordered() -> None:
    ids = [messages.new_message_id() for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert messages.is_message_id(value)
    prefixes = [value[:13] for value in ids]  # the 48-bit millisecond clock
    assert prefixes == sorted(prefixes)


@pytest.mark.parametrize(
    "value", ["", "r-1", GOOD_ID.replace("-", ""), "{" + GOOD_ID + "}", "urn:uuid:" + GOOD_ID]
)
def test_is_message_id_wants_the_canonical_form(value: str) -> None:
    assert not messages.is_message_id(value)


def test_last_will_is_an_offline_status() -> None:
    connected = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    will = messages.last_will(
        "edge-01", messages.new_message_id(), connected_at=connected, agent_version="0.1.0"
    )
    assert will.state == device_pb2.DEVICE_STATE_OFFLINE
    assert will.cause == device_pb2.STATUS_CAUSE_LAST_WILL
    assert will.since.ToDatetime(tzinfo=UTC) == connected
    address, decoded = messages.decode_topic(
        topics.last_will_topic("edge-01"), messages.encode(will)
    )
    assert address.kind is topics.LAST_WILL_KIND
    assert decoded == will


grids = st.integers(0, 12).flatmap(
    lambda rows: st.integers(0, 12).flatmap(
        lambda cols: st.lists(st.integers(0, 2), min_size=rows * cols, max_size=rows * cols).map(
            lambda values: np.array(values, dtype=np.uint8).reshape(rows, cols)
        )
    )
)


@given(grid=grids, origin=st.tuples(st.integers(-500, 500), st.integers(-500, 500)))
def test_compact_map_round_trips(grid: np.ndarray[Any, Any], origin: tuple[int, int]) -> None:
    compact = messages.pack_states(grid, origin=origin)
    assert len(compact.states) == -(-grid.size // 4)
    back = messages.unpack_states(compact)
    assert back.dtype == np.uint8
    assert np.array_equal(back, grid)
    assert (compact.origin_x, compact.origin_y) == origin
    wire = result_pb2.CompactWaferMap.FromString(compact.SerializeToString())
    assert np.array_equal(messages.unpack_states(wire), grid)


def test_compact_map_bit_layout_is_most_significant_first() -> None:
    compact = messages.pack_states(np.array([[1, 2, 0, 1, 2]]))
    assert compact.states == bytes([0b01_10_00_01, 0b10_00_00_00])


def test_compact_map_of_a_wafer_map() -> None:
    grid = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 2, 0]], dtype=np.uint8)
    wafer = WaferMap.from_dense(grid, provenance=Provenance("t.csv", "csv"), origin=(10, -3))
    compact = messages.compact_map(wafer)
    assert (compact.rows, compact.cols, compact.origin_x, compact.origin_y) == (3, 4, 10, -3)
    assert np.array_equal(messages.unpack_states(compact), grid)


def test_bad_compact_maps_are_refused() -> None:
    with pytest.raises(MessageError, match="needs 1 state bytes"):
        messages.unpack_states(result_pb2.CompactWaferMap(rows=2, cols=2, states=b""))
    with pytest.raises(MessageError, match="reserved state 3"):
        messages.unpack_states(result_pb2.CompactWaferMap(rows=1, cols=1, states=b"\xc0"))
    with pytest.raises(MessageError, match="only 0"):
        messages.pack_states(np.array([[3]]))
    with pytest.raises(MessageError, match="2-D"):
        messages.pack_states(np.array([1, 2]))


def test_manifest_signing_digest_ignores_the_signature() -> None:
    manifest = populate(bundle_pb2.BundleManifest())
    assert isinstance(manifest, bundle_pb2.BundleManifest)
    digest = messages.manifest_signing_digest(manifest)
    assert len(digest) == 32
    manifest.signature.value = b"another signature"
    assert messages.manifest_signing_digest(manifest) == digest
    manifest.model_version = "changed"
    assert messages.manifest_signing_digest(manifest) != digest


# --------------------------------------------------------------------------- gRPC on loopback

BUNDLE = bytes(range(256)) * 41  # 10,496 bytes: several chunks
BUNDLE_SHA256 = hashlib.sha256(BUNDLE).hexdigest()


def outcome_for(file_name: str, content: bytes) -> ingest_pb2.SubmitResponse:
    response = ingest_pb2.SubmitResponse(
        file_name=file_name, sha256=hashlib.sha256(content).hexdigest()
    )
    if not content.startswith(b"WAFER"):
        response.status = ingest_pb2.SUBMIT_STATUS_REJECTED
        response.error.code = "unknown_format"
        response.error.message = f"{file_name}: no reader recognises the content"
        return response
    response.status = ingest_pb2.SUBMIT_STATUS_ACCEPTED
    for index in range(content.count(b"WAFER")):
        wafer = response.wafers.add(wafer_index=index, result_id=messages.new_message_id())
        wafer.status = ingest_pb2.WAFER_OUTCOME_STATUS_CLASSIFIED
        wafer.pattern = "Edge-Ring"
        wafer.confidence = 0.75
    return response


class TesterIngestForTests(ingest_pb2_grpc.TesterIngestServicer):
    """A stand-in edge: "parses" a file by counting WAFER markers."""

    def Submit(self, request: ingest_pb2.WaferFile, context: Any) -> ingest_pb2.SubmitResponse:
        response = outcome_for(request.file_name, request.content)
        response.correlation_id = request.correlation_id
        if request.options.include_results:
            for wafer in response.wafers:
                wafer.result.result_id = wafer.result_id
        return response

    def Upload(
        self, request_iterator: Iterator[ingest_pb2.UploadRequest], context: Any
    ) -> ingest_pb2.SubmitResponse:
        first = next(request_iterator)
        header = first.header
        content = bytearray()
        for request in request_iterator:
            if request.WhichOneof("part") != "chunk" or request.chunk.offset != len(content):
                response = ingest_pb2.SubmitResponse(status=ingest_pb2.SUBMIT_STATUS_REJECTED)
                response.error.code = "out_of_order_chunk"
                return response
            content += request.chunk.data
        response = outcome_for(header.file_name, bytes(content))
        response.correlation_id = header.correlation_id
        if len(content) != header.total_bytes or response.sha256 != header.sha256:
            response.status = ingest_pb2.SUBMIT_STATUS_REJECTED
            response.error.code = "digest_mismatch"
        return response

    def SubmitStream(
        self, request_iterator: Iterator[ingest_pb2.WaferFile], context: Any
    ) -> Iterator[ingest_pb2.SubmitResponse]:
        for request in request_iterator:
            yield self.Submit(request, context)


class BundleTransferForTests(transfer_pb2_grpc.BundleTransferServicer):
    """A stand-in hub serving one bundle in 4 KiB chunks."""

    def Stat(self, request: transfer_pb2.BundleQuery, context: Any) -> transfer_pb2.BundleInfo:
        if request.sha256 not in ("", BUNDLE_SHA256):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no bundle {request.sha256}")
        info = transfer_pb2.BundleInfo(
            model_version="2026.03.1", sha256=BUNDLE_SHA256, size_bytes=len(BUNDLE)
        )
        info.chunk_bytes = 4096
        info.manifest.model_version = "2026.03.1"
        info.manifest.files.add(
            path="engine.onnx",
            sha256=BUNDLE_SHA256,
            size_bytes=len(BUNDLE),
            role=bundle_pb2.BUNDLE_FILE_ROLE_ENGINE_ONNX,
        )
        return info

    def Download(
        self, request: transfer_pb2.DownloadRequest, context: Any
    ) -> Iterator[transfer_pb2.BundleChunk]:
        chunk = request.max_chunk_bytes or 4096
        for offset in range(request.offset, len(BUNDLE), chunk):
            data = BUNDLE[offset : offset + chunk]
            yield transfer_pb2.BundleChunk(
                offset=offset,
                data=data,
                total_bytes=len(BUNDLE),
                sha256=BUNDLE_SHA256,
                last=offset + len(data) == len(BUNDLE),
            )


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_TesterIngestServicer_to_server(TesterIngestForTests(), server)
    transfer_pb2_grpc.add_BundleTransferServicer_to_server(BundleTransferForTests(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as open_channel:
        yield open_channel
    server.stop(grace=None)


def test_grpc_submit(channel: grpc.Channel) -> None:
    stub = ingest_pb2_grpc.TesterIngestStub(channel)
    request = ingest_pb2.WaferFile(
        file_name="lot1.stdf", content=b"WAFER 1 WAFER 2", correlation_id="c-1"
    )
    request.options.include_results = True
    response = stub.Submit(request, timeout=10)
    assert response.status == ingest_pb2.SUBMIT_STATUS_ACCEPTED
    assert response.correlation_id == "c-1"
    assert [w.wafer_index for w in response.wafers] == [0, 1]
    assert all(messages.is_message_id(w.result_id) for w in response.wafers)
    assert all(w.result.result_id == w.result_id for w in response.wafers)

    rejected = stub.Submit(ingest_pb2.WaferFile(file_name="x.bin", content=b"\0"), timeout=10)
    assert rejected.status == ingest_pb2.SUBMIT_STATUS_REJECTED
    assert rejected.error.code == "unknown_format"
    assert "x.bin" in rejected.error.message


def test_grpc_upload_in_chunks(channel: grpc.Channel) -> None:
    stub = ingest_pb2_grpc.TesterIngestStub(channel)
    content = b"WAFER " * 5000
    header = ingest_pb2.UploadHeader(
        file_name="big.stdf",
        correlation_id="c-2",
        total_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )

    def requests() -> Iterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=header)
        for offset in range(0, len(content), 4096):
            chunk = ingest_pb2.FileChunk(offset=offset, data=content[offset : offset + 4096])
            yield ingest_pb2.UploadRequest(chunk=chunk)

    response = stub.Upload(requests(), timeout=10)
    assert response.status == ingest_pb2.SUBMIT_STATUS_ACCEPTED, response.error
    assert response.correlation_id == "c-2"
    assert len(response.wafers) == 5000


def test_grpc_submit_stream(channel: grpc.Channel) -> None:
    stub = ingest_pb2_grpc.TesterIngestStub(channel)
    files = [
        ingest_pb2.WaferFile(file_name=f"f{i}.tsk", content=b"WAFER" * i, correlation_id=f"c{i}")
        for i in range(4)
    ]
    responses = {r.correlation_id: r for r in stub.SubmitStream(iter(files), timeout=10)}
    assert set(responses) == {"c0", "c1", "c2", "c3"}
    assert responses["c0"].status == ingest_pb2.SUBMIT_STATUS_REJECTED
    assert len(responses["c3"].wafers) == 3


def test_grpc_bundle_stat_and_resumable_download(channel: grpc.Channel) -> None:
    stub = transfer_pb2_grpc.BundleTransferStub(channel)
    info = stub.Stat(transfer_pb2.BundleQuery(model_version="2026.03.1"), timeout=10)
    assert (info.sha256, info.size_bytes) == (BUNDLE_SHA256, len(BUNDLE))
    assert info.manifest.files[0].role == bundle_pb2.BUNDLE_FILE_ROLE_ENGINE_ONNX

    with pytest.raises(grpc.RpcError) as caught:
        stub.Stat(transfer_pb2.BundleQuery(sha256="0" * 64), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    # Download, "lose the link" after the first chunk, then resume from what is on disk.
    received = bytearray()
    stream = stub.Download(transfer_pb2.DownloadRequest(sha256=BUNDLE_SHA256), timeout=10)
    first = next(stream)
    stream.cancel()
    assert first.offset == 0 and first.sha256 == BUNDLE_SHA256
    received += first.data
    request = transfer_pb2.DownloadRequest(
        sha256=BUNDLE_SHA256, offset=len(received), max_chunk_bytes=3000
    )
    chunks = list(stub.Download(request, timeout=10))
    for chunk in chunks:
        assert chunk.offset == len(received)
        assert chunk.sha256 == BUNDLE_SHA256
        received += chunk.data
    assert chunks[-1].last and not any(c.last for c in chunks[:-1])
    assert hashlib.sha256(received).hexdigest() == BUNDLE_SHA256


def test_the_documented_example_payload_decodes() -> None:
    doc = (REPO_ROOT / "docs" / "messages.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    result = messages.decode(example, result_pb2.WaferResult)
    assert result.sequence == 1842
    assert messages.unpack_states(result.map).shape == (2, 4)
    again = json.loads(messages.encode(result))
    assert again == json.loads(example)


# --------------------------------------------------------------------------- binary payloads

PROTOBUF_RESULT = "application/x-protobuf; proto=waferscope.v1.WaferResult"


def test_binary_payloads_round_trip_when_the_content_type_says_so() -> None:
    result = result_pb2.WaferResult(result_id=GOOD_ID, device_id="edge-01", die_count=812)
    result.heatmap.data = bytes(range(256))
    result.confidence = 0.42
    payload = messages.encode(result, "protobuf")
    assert messages.content_type(result, "protobuf") == PROTOBUF_RESULT
    assert messages.is_protobuf_content(PROTOBUF_RESULT)
    assert not messages.is_protobuf_content(messages.content_type(result))
    back = messages.decode(payload, result_pb2.WaferResult, content_type=PROTOBUF_RESULT)
    assert back.schema_version == messages.SCHEMA_VERSION  # stamped like the JSON form
    back.ClearField("schema_version")
    assert back == result
    assert len(payload) < len(messages.encode(result)) / 2
    address, decoded = messages.decode_topic(TOPIC, payload, PROTOBUF_RESULT)
    assert address.device_id == "edge-01" and decoded.result_id == GOOD_ID
    # without the content type a binary payload is not taken for JSON
    with pytest.raises(MessageError, match=r"not UTF-8|not JSON"):
        messages.decode(payload, result_pb2.WaferResult, topic=TOPIC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty payload"),
        (b"\xff\xff\xff\xff", "not a binary WaferResult"),
        (b'{"resultId": "x"}', "not a binary WaferResult"),
        (result_pb2.WaferResult(device_id="e").SerializeToString(), "result_id is missing"),
        (
            result_pb2.WaferResult(result_id="r-1", device_id="e").SerializeToString(),
            "not a UUID",
        ),
    ],
)
def test_bad_binary_payloads_raise_message_error(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason) as caught:
        messages.decode(payload, result_pb2.WaferResult, topic=TOPIC, content_type=PROTOBUF_RESULT)
    assert str(caught.value).startswith(f"{TOPIC}: bad WaferResult payload: ")
