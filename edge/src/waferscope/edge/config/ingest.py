"""Edge config sections of the intake: hot folder, gRPC ingest, and the local store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from waferscope.protocols.settings import Section


# --------------------------------------------------------------------------- ingest
class HotFolderConfig(Section):
    """A watched directory testers copy their files into."""

    enabled: bool = Field(default=True, description="Watch the folder.")
    path: Path | None = Field(
        default=None, description="The incoming folder. Empty: <data_dir>/incoming."
    )
    done_dir: Path | None = Field(
        default=None, description="Where processed files go. Empty: <path>/../done."
    )
    rejected_dir: Path | None = Field(
        default=None,
        description="Where refused files go, each with a '<name>.reason.txt'. "
        "Empty: <path>/../rejected.",
    )
    poll_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="How often the folder is scanned."
    )
    settle_s: float = Field(
        default=0.5,
        ge=0,
        le=600,
        description="A file is taken once its size and modification time have not changed for "
        "this long (files renamed into the folder are complete at once; use settle_s for "
        "testers that write in place).",
    )
    ignore_suffixes: list[str] = Field(
        default_factory=lambda: [".part", ".tmp", ".partial", ".filepart", ".swp"],
        description="Names ending like this are being written and are never taken.",
    )
    max_file_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Larger files are rejected unread."
    )


class GrpcTlsConfig(Section):
    """TLS for TesterIngest: a server certificate, and client certificates when client_ca_file
    is set (mutual TLS)."""

    cert_file: Path | None = Field(
        default=None, description="Server certificate chain (PEM). Set with key_file: TLS only."
    )
    key_file: Path | None = Field(default=None, description="Server private key (PEM).")
    client_ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) of the testers' client certificates. Set: mutual TLS, a "
        "client without a certificate signed by it is refused.",
    )

    @model_validator(mode="after")
    def _pairs(self) -> GrpcTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set cert_file and key_file together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file (mutual TLS) needs cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class GrpcConfig(Section):
    """The TesterIngest gRPC service for testers that push their files."""

    enabled: bool = Field(default=False, description="Serve TesterIngest.")
    listen: str = Field(default="127.0.0.1:50051", description="host:port to listen on.")
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Largest Submit message (a whole file)."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Largest file accepted through Upload."
    )
    workers: int = Field(default=8, ge=1, le=256, description="Concurrent RPCs.")
    response_timeout_s: float = Field(
        default=60, gt=0, description="How long a call waits for its wafers to be classified."
    )
    tls: GrpcTlsConfig = Field(default=GrpcTlsConfig())


class IngestConfig(Section):
    hot_folder: HotFolderConfig = Field(default=HotFolderConfig())
    grpc: GrpcConfig = Field(default=GrpcConfig())
    queue_files: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Files waiting for classification before ingest waits.",
    )
    retest: Literal["last", "first", "best", "all"] = Field(
        default="last", description="Which result counts for a die tested more than once."
    )


# --------------------------------------------------------------------------- store
class StoreConfig(Section):
    """The local SQLite buffer of results, heatmaps, alerts and the outbox."""

    path: Path | None = Field(
        default=None, description="SQLite file. Empty: <data_dir>/edge.sqlite."
    )
    max_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Size bound of the database. When reached, the oldest *published* results "
        "are pruned; when only unpublished data is left, ingest pauses and a 'store_full' "
        "alert is raised (unpublished results are never dropped).",
    )
    prune_to: float = Field(
        default=0.9,
        gt=0.1,
        lt=1,
        description="Pruning frees space down to this fraction of max_bytes.",
    )
    keep_heatmaps: bool = Field(default=True, description="Store each wafer's Grad-CAM heatmap.")
    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite durability: 'full' syncs every commit to disk (survives power loss); "
        "'normal' (WAL) survives a crash or kill of the agent but may lose the last commits "
        "on power loss, for less disk wear and more throughput on slow storage.",
    )
