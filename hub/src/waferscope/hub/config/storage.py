"""Hub config sections of storage: the database and the blob store (directory or S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from waferscope.protocols.settings import Section


# --------------------------------------------------------------------------- storage
class DatabaseConfig(Section):
    """Where the hub keeps its records (SQLAlchemy URL; migrations run with Alembic)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy database URL, e.g. 'postgresql+psycopg://hub@db/waferscope' "
        "('postgresql://' means the same). Empty: a SQLite file <data_dir>/hub.sqlite.",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Bring the schema up to date when the hub starts (else: "
        "'waferscope hub migrate' must have run).",
    )
    pool_size: int = Field(default=5, ge=1, le=200, description="Connections kept (PostgreSQL).")
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite 'synchronous' pragma in WAL mode: NORMAL survives a process crash "
        "(the hub's SIGKILL test), FULL also a power cut at some cost in speed.",
    )
    busy_timeout_s: float = Field(
        default=30, gt=0, le=600, description="How long a writer waits for a locked database."
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging).")


class S3Config(Section):
    """S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...)."""

    bucket: str = Field(default="waferscope", description="Bucket name (created if missing).")
    prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. 'hub1/'.")
    endpoint_url: str | None = Field(
        default=None, description="Endpoint of a non-AWS service, e.g. 'http://minio:9000'."
    )
    region: str | None = Field(default=None, description="Region name, if the service wants one.")
    access_key_id: str | None = Field(
        default=None, description="Access key. Empty: the usual AWS sources (env, profile, role)."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="Secret key.")
    verify_tls: bool = Field(default=True, description="Check the endpoint's TLS certificate.")


class BlobConfig(Section):
    """Where wafer maps, heatmaps and engine bundles go (content-addressed blobs)."""

    backend: Literal["directory", "s3"] = Field(
        default="directory", description="'directory' (files on disk) or 's3'."
    )
    path: Path | None = Field(default=None, description="Blob folder. Empty: <data_dir>/blobs.")
    fsync: bool = Field(
        default=False,
        description="fsync each blob file before the database row that names it commits "
        "(survives power cuts; costs write speed).",
    )
    s3: S3Config = Field(default=S3Config())
