"""Release files over the BundleTransfer gRPC service: a server for a folder, a resumable client.

The server (the hub's, or any host's) serves every ``*.wsrelease`` file in a folder by its SHA-256.
The client resumes a download from the size of its ``.part`` file, checks that every chunk
belongs to the same file (the whole file's SHA-256 repeated in each chunk) and the digest of
the finished file, and only then renames it into place.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Final

import grpc

from waferscope.protocols.bundle import sha256_file
from waferscope.protocols.pb import transfer_pb2, transfer_pb2_grpc
from waferscope.protocols.release.errors import ReleaseError
from waferscope.protocols.release.layout import SUFFIX

CHUNK_BYTES: Final = 256 * 1024


class ReleaseTransferError(ReleaseError):
    """A release download failed: the server is unreachable or does not have it, or the bytes
    received do not have the announced size and SHA-256."""


class ReleaseFileServicer(transfer_pb2_grpc.BundleTransferServicer):
    """Serves the release files of one folder, addressed by their SHA-256."""

    def __init__(self, folder: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.folder = folder
        self.chunk_bytes = chunk_bytes
        self._index: dict[str, Path] = {}

    def _find(self, sha256: str) -> Path | None:
        if sha256 not in self._index:
            self._index = {sha256_file(p): p for p in self.folder.glob(f"*{SUFFIX}")}
        return self._index.get(sha256)

    def Stat(  # noqa: N802 (gRPC method name)
        self, request: transfer_pb2.BundleQuery, context: grpc.ServicerContext
    ) -> transfer_pb2.BundleInfo:
        path = self._find(request.sha256)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no release with sha256 {request.sha256}")
        return transfer_pb2.BundleInfo(
            sha256=request.sha256, size_bytes=path.stat().st_size, chunk_bytes=self.chunk_bytes
        )

    def Download(  # noqa: N802 (gRPC method name)
        self, request: transfer_pb2.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.BundleChunk]:
        path = self._find(request.sha256)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no release with sha256 {request.sha256}")
        total = path.stat().st_size
        if request.offset > total:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, f"offset {request.offset} > {total}")
        size = min(request.max_chunk_bytes or self.chunk_bytes, self.chunk_bytes)
        with path.open("rb") as fh:
            fh.seek(request.offset)
            offset = request.offset
            while True:
                data = fh.read(size)
                end = offset + len(data)
                yield transfer_pb2.BundleChunk(
                    offset=offset,
                    data=data,
                    total_bytes=total,
                    sha256=request.sha256,
                    last=end >= total,
                )
                if end >= total:
                    return
                offset = end


def serve(
    folder: Path, address: str = "127.0.0.1:0", chunk_bytes: int = CHUNK_BYTES
) -> tuple[grpc.Server, int]:
    """Start a BundleTransfer server for ``folder``: (server, bound port)."""
    return serve_servicer(ReleaseFileServicer(folder, chunk_bytes), address)


def serve_servicer(
    servicer: ReleaseFileServicer, address: str = "127.0.0.1:0"
) -> tuple[grpc.Server, int]:
    """Start a BundleTransfer server for ``servicer`` (e.g. one reading a blob store)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    transfer_pb2_grpc.add_BundleTransferServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port


def download(
    target: str,
    sha256: str,
    size: int,
    dest: Path,
    *,
    device_id: str = "",
    timeout_s: float = 600.0,
    max_chunks: int | None = None,
) -> Path:
    """Fetch a release file into ``dest`` (resuming ``dest.part``); ReleaseTransferError if bad.

    ``max_chunks`` stops after that many chunks (the partial file stays to be resumed).
    """
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    received = 0
    if offset < size:
        try:
            with grpc.insecure_channel(target) as channel, part.open("ab") as out:
                stub = transfer_pb2_grpc.BundleTransferStub(channel)
                request = transfer_pb2.DownloadRequest(
                    sha256=sha256, offset=offset, device_id=device_id
                )
                for chunk in stub.Download(request, timeout=timeout_s):
                    if (
                        chunk.sha256 != sha256
                        or chunk.offset != offset
                        or chunk.total_bytes != size
                    ):
                        raise ReleaseTransferError(
                            f"{target}: chunk at {chunk.offset} is not of release {sha256[:12]}"
                        )
                    out.write(chunk.data)
                    offset += len(chunk.data)
                    received += 1
                    if max_chunks is not None and received >= max_chunks and offset < size:
                        return part
                    if chunk.last:
                        break
        except grpc.RpcError as exc:
            raise ReleaseTransferError(
                f"{target}: download of {sha256[:12]} failed at byte {offset} "
                f"({exc.code().name}: {exc.details()})"
            ) from None
    return finish_part(part, dest, sha256, size, target)


def finish_part(part: Path, dest: Path, sha256: str, size: int, source: str) -> Path:
    """Rename a complete ``.part`` file to ``dest`` if it has the announced size and SHA-256;
    otherwise delete it and raise ReleaseTransferError (every fetcher ends here)."""
    if part.stat().st_size != size or sha256_file(part) != sha256:
        part.unlink()
        raise ReleaseTransferError(
            f"{source}: downloaded {sha256[:12]} does not match its size {size} and sha256"
        )
    part.replace(dest)
    return dest
