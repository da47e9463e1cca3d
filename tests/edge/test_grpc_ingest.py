"""TesterIngest over real gRPC on loopback: unary, chunked upload, streaming, and every refusal."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from edge_test_support import Broker, agent_toml, wafer_bytes
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config
from waferscope.protocols.pb import ingest_pb2, ingest_pb2_grpc

ACCEPTED = ingest_pb2.SUBMIT_STATUS_ACCEPTED
REJECTED = ingest_pb2.SUBMIT_STATUS_REJECTED


@pytest.fixture
def agent(tmp_path: Path, bundle_dir: Path, broker: Broker) -> Iterator[Wiring]:
    extra = (
        '[ingest.grpc]\nenabled = true\nlisten = "127.0.0.1:0"\nmax_message_bytes = 4194304\n'
        "max_upload_bytes = 8388608\n"
    )
    w = build_agent(
        load_config(agent_toml(tmp_path, bundle_dir, broker.port, extra), environ={}).config
    )
    w.agent.start()
    yield w
    w.agent.stop()


@pytest.fixture
def stub(agent: Wiring) -> Iterator[ingest_pb2_grpc.TesterIngestStub]:
    assert agent.ingest is not None
    with grpc.insecure_channel(agent.ingest.address) as channel:
        yield ingest_pb2_grpc.TesterIngestStub(channel)


def test_submit_a_real_file(
    stub: ingest_pb2_grpc.TesterIngestStub, agent: Wiring, tester_dir: Path
) -> None:
    content = (tester_dir / "stdf/a595.stdf.gz").read_bytes()
    request = ingest_pb2.WaferFile(
        file_name="a595.stdf.gz",
        content=content,
        tester_id="T-J750-03",
        correlation_id="c-1",
        sha256=hashlib.sha256(content).hexdigest(),
        metadata={"slot": "7"},
        options=ingest_pb2.SubmitOptions(include_results=True),
    )
    response = stub.Submit(request, timeout=60)
    assert response.status == ACCEPTED, response
    assert response.correlation_id == "c-1"
    assert len(response.wafers) == 3
    for w in response.wafers:
        assert w.status == ingest_pb2.WAFER_OUTCOME_STATUS_CLASSIFIED
        assert w.result.result_id == w.result_id and w.result.sequence > 0
        assert w.result.correlation_id == "c-1"
        assert w.result.wafer.extra["slot"] == "7"
        assert w.result.wafer.tester_id  # the file names its tester
    stored = agent.store.result(response.wafers[0].result_id)
    assert stored is not None  # answered only once stored
    again = stub.Submit(request, timeout=60)  # a retry: the same ids, no new classification
    assert [w.result_id for w in again.wafers] == [w.result_id for w in response.wafers]
    assert agent.store.counts()["results"] == 3


def test_upload_in_chunks(stub: ingest_pb2_grpc.TesterIngestStub, tester_dir: Path) -> None:
    content = (tester_dir / "tsk/001.QR2352-D5U278-CP-1.gz").read_bytes()
    digest = hashlib.sha256(content).hexdigest()

    def parts(
        data: bytes, header: ingest_pb2.UploadHeader, step: int = 4096, skip: bool = False
    ) -> Iterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=header)
        for offset in range(0, len(data), step):
            if skip and offset == step:
                continue
            yield ingest_pb2.UploadRequest(
                chunk=ingest_pb2.FileChunk(offset=offset, data=data[offset : offset + step])
            )

    header = ingest_pb2.UploadHeader(
        file_name="prober.tsk.gz", total_bytes=len(content), sha256=digest, correlation_id="u-1"
    )
    response = stub.Upload(parts(content, header), timeout=60)
    assert response.status == ACCEPTED, response
    assert response.wafers[0].wafer.lot_id
    assert response.sha256 == digest

    bad = stub.Upload(parts(content, header, skip=True), timeout=60)
    assert bad.status == REJECTED and bad.error.code == "out_of_order_chunk"
    assert "offset" in bad.error.message
    short = ingest_pb2.UploadHeader(file_name="x.gz", total_bytes=len(content) + 5, sha256=digest)
    assert stub.Upload(parts(content, short), timeout=60).error.code == "size_mismatch"
    wrong = ingest_pb2.UploadHeader(file_name="x.gz", total_bytes=len(content), sha256="0" * 64)
    assert stub.Upload(parts(content, wrong), timeout=60).error.code == "digest_mismatch"
    huge = ingest_pb2.UploadHeader(file_name="x.gz", total_bytes=9 * 1024 * 1024)
    refused = stub.Upload(iter([ingest_pb2.UploadRequest(header=huge)]), timeout=60)
    assert refused.error.code == "too_large" and "8,388,608" in refused.error.message
    headless = stub.Upload(
        iter([ingest_pb2.UploadRequest(chunk=ingest_pb2.FileChunk(offset=0, data=b"x"))]),
        timeout=60,
    )
    assert headless.error.code == "missing_header"


def test_stream_many_files_with_bad_ones_inside(
    stub: ingest_pb2_grpc.TesterIngestStub, val_npz: Path, tester_dir: Path
) -> None:
    files = [
        ingest_pb2.WaferFile(file_name=f"s{i}.xml", content=wafer_bytes(w), correlation_id=f"s{i}")
        for i, w in enumerate(dataset_wafers(val_npz, 12, start=2000))
    ]
    truncated = (tester_dir / "stdf/a595.stdf.gz").read_bytes()[:1500]
    files.insert(
        3, ingest_pb2.WaferFile(file_name="cut.stdf", content=truncated, correlation_id="cut")
    )
    files.insert(
        7,
        ingest_pb2.WaferFile(
            file_name="junk.bin", content=b"\x00\x01\x02 nothing", correlation_id="junk"
        ),
    )
    files.insert(
        9, ingest_pb2.WaferFile(file_name="empty.xml", content=b"", correlation_id="empty")
    )
    responses = {r.correlation_id: r for r in stub.SubmitStream(iter(files), timeout=120)}
    assert len(responses) == 15
    assert sum(r.status == ACCEPTED for r in responses.values()) == 12
    assert responses["cut"].error.code in ("truncated", "format_error")
    assert "cut.stdf" in responses["cut"].error.message
    assert responses["junk"].error.code == "unknown_format"
    assert responses["empty"].error.code == "empty"


def test_message_over_the_limit_is_a_transport_error(
    stub: ingest_pb2_grpc.TesterIngestStub,
) -> None:
    big = ingest_pb2.WaferFile(file_name="big.bin", content=b"x" * (6 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as info:
        stub.Submit(big, timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
