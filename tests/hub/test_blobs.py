"""Blob store contract: one suite, run against the directory store and a real S3-compatible server.

The S3 server is moto's standalone server (``moto[server]``: a real HTTP endpoint speaking the S3
protocol, started in-process on a free port); boto3 talks to it over the network as it would to
MinIO or AWS. Skipped with a reason when moto or boto3 is not installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_data import make_result, real_grids
from hub_support import free_port

from waferscope.hub.blobs import (
    BlobNotFoundError,
    BlobStore,
    DirectoryBlobStore,
    S3BlobStore,
    blob_key,
    open_blob_store,
)
from waferscope.hub.config import BlobConfig, S3Config
from waferscope.hub.mapcodec import decode_map, encode_map
from waferscope.protocols import messages


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="boto3 (the hub's s3 extra) is not installed")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "directory":
        return DirectoryBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    config = BlobConfig(
        backend="s3",
        s3=S3Config(
            bucket=f"ws-{tmp_path.name.lower().replace('_', '-')[-40:]}",
            prefix="hub/",
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",  # type: ignore[arg-type]
        ),
    )
    made = open_blob_store(config, tmp_path)
    assert isinstance(made, S3BlobStore)
    return made


def test_put_get_is_content_addressed(store: BlobStore) -> None:
    key = store.put("maps", b"\x00\x01wafer")
    assert key == blob_key("maps", b"\x00\x01wafer")
    assert key.startswith("maps/") and len(key.split("/")[2]) == 64
    assert store.put("maps", b"\x00\x01wafer") == key  # same bytes, same key, no error
    assert store.get(key) == b"\x00\x01wafer"
    assert store.exists(key)
    other = store.put("heatmaps", b"\x00\x01wafer")
    assert other != key and store.get(other) == b"\x00\x01wafer"
    store.check()


def test_missing_and_malformed_keys(store: BlobStore) -> None:
    missing = blob_key("maps", b"never stored")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFoundError):
        store.get(missing)
    for bad in ("../../etc/passwd", "maps/zz/" + "z" * 64, "maps/ab/abc", ""):
        assert not store.exists(bad)
        with pytest.raises(BlobNotFoundError):
            store.get(bad)


def test_delete(store: BlobStore) -> None:
    key = store.put("bundles", b"bundle bytes" * 1000)
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # already gone: no error


def test_uri_names_the_place(store: BlobStore) -> None:
    key = store.put("maps", b"x")
    uri = store.uri(key)
    assert uri.endswith(key)
    assert uri.startswith(("file://", "s3://"))


def test_concurrent_writers_of_the_same_blob(store: BlobStore) -> None:
    data = b"same map from two workers" * 100
    keys: list[str] = []

    def put() -> None:
        keys.append(store.put("maps", data))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and store.get(keys[0]) == data


def test_real_map_round_trip(store: BlobStore, data_dir: Path) -> None:
    for i, (grid, label) in enumerate(real_grids(data_dir, 5)):
        msg = make_result(grid, label, i)
        key = store.put("maps", encode_map(msg.map))
        back = decode_map(store.get(key))
        assert back == msg.map
        assert (messages.unpack_states(back) == grid).all()
