"""The blob store: wafer maps, heatmaps and engine bundles, content-addressed.

A blob's key is ``<kind>/<sha256[:2]>/<sha256>`` of its bytes, so writing the same bytes twice
is harmless (a redelivered result, two wafers with the same map) and a key names exactly one
content. Two implementations sit behind :class:`BlobStore`: a directory (the default) and an
S3-compatible bucket (boto3, the ``s3`` extra). One contract test suite runs against both
(``tests/hub/test_blobs.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from waferscope.hub.config import BlobConfig
from waferscope.protocols.errors import WaferscopeError

KINDS = frozenset({"maps", "heatmaps", "bundles", "uploads", "releases"})


class BlobError(WaferscopeError):
    """A blob could not be stored or read."""


class BlobNotFoundError(BlobError, KeyError):
    """No blob has this key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "blob not found"


def blob_key(kind: str, data: bytes) -> str:
    if kind not in KINDS:
        raise BlobError(f"unknown blob kind {kind!r} (one of {sorted(KINDS)})")
    digest = hashlib.sha256(data).hexdigest()
    return f"{kind}/{digest[:2]}/{digest}"


def _check_key(key: str) -> None:
    parts = key.split("/")
    if (
        len(parts) != 3
        or parts[0] not in KINDS
        or len(parts[2]) != 64
        or parts[1] != parts[2][:2]
        or any(c not in "0123456789abcdef" for c in parts[2])
    ):
        raise BlobNotFoundError(f"not a blob key: {key!r}")


class BlobStore(Protocol):
    """Where blobs live. Keys come from :meth:`put`; every method is safe from several threads."""

    def put(self, kind: str, data: bytes) -> str:
        """Store ``data`` (if not already there) and return its key."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes of a blob; :class:`BlobNotFoundError` if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove a blob (no error if it is already gone)."""
        ...

    def uri(self, key: str) -> str:
        """Where the blob lives, for BlobRef.uri ("file://...", "s3://bucket/key")."""
        ...

    def check(self) -> None:
        """Raise :class:`BlobError` when the store cannot be used (readiness)."""
        ...


class DirectoryBlobStore:
    """Blobs as files under one folder; written to a temporary name and renamed into place."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self._folders: set[str] = set()  # fan-out folders known to exist
        self._counter = itertools.count()

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def put(self, kind: str, data: bytes) -> str:
        # The hot path of the ingest (two blobs per result): plain os calls, no pathlib.
        key = blob_key(kind, data)
        final = os.path.join(self.root, key)
        if os.path.exists(final):
            return key
        folder = os.path.dirname(final)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        tmp = f"{folder}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(self._counter)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {key}") from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except BlobNotFoundError:
            return False

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return (self.root / key).resolve().as_uri()

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BlobError(f"blob folder {self.root} is not writable")


class S3BlobStore:
    """Blobs as objects in an S3-compatible bucket (boto3)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        verify_tls: bool = True,
        create_bucket: bool = True,
    ) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
            from botocore.exceptions import ClientError  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - depends on the install
            raise BlobError(
                "the S3 blob store needs boto3: pip install 'waferscope-hub[s3]'"
            ) from None
        self._client_error: type[Exception] = ClientError
        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            verify=verify_tls,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        if create_bucket and not self._bucket_exists():
            self.client.create_bucket(Bucket=bucket)

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except self._client_error:
            return False

    def _object(self, key: str) -> str:
        _check_key(key)
        return self.prefix + key

    def put(self, kind: str, data: bytes) -> str:
        key = blob_key(kind, data)
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + key,
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        return key

    def get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"]
            data: bytes = body.read()
            return data
        except self._client_error as exc:
            response: dict[str, Any] = getattr(exc, "response", {})
            if response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFoundError(f"no blob {key}") from None
            raise BlobError(f"cannot read blob {key}: {exc}") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
            return True
        except BlobNotFoundError:
            return False
        except self._client_error:
            return False

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object(key)}"

    def check(self) -> None:
        if not self._bucket_exists():
            raise BlobError(f"S3 bucket {self.bucket} is not reachable")


def open_blob_store(config: BlobConfig, default_path: Path) -> BlobStore:
    """The blob store a configuration asks for."""
    if config.backend == "s3":
        s3 = config.s3
        secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
        return S3BlobStore(
            s3.bucket,
            prefix=s3.prefix,
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=secret,
            verify_tls=s3.verify_tls,
        )
    return DirectoryBlobStore(config.path or default_path, fsync=config.fsync)
