"""What flows through the edge's processing queue: ingest jobs, their outcomes and statuses.

Ingest sources (hot folder, gRPC) build an :class:`IngestJob`; the worker fills in one
:class:`JobOutcome` per job, with a :class:`WaferOutcome` per wafer, and a :class:`JobStatus`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.trace import Span

from waferscope.edge.store import FileRecord
from waferscope.protocols.errors import FormatError, TruncatedError, UnknownFormatError
from waferscope.protocols.formats import Source
from waferscope.protocols.inference import PreparedWafer
from waferscope.protocols.pb import result_pb2

if TYPE_CHECKING:
    from waferscope.edge import observe


class JobStatus(enum.StrEnum):
    """What became of a job (its value is the word the reason files, spans and metrics show)."""

    ACCEPTED = "accepted"  # every wafer stored
    PARTIAL = "partial"  # some wafers stored, some refused
    REJECTED = "rejected"  # nothing usable: the file is refused
    DUPLICATE = "duplicate"  # the same bytes were processed before
    PAUSED = "paused"  # store full or internal error: nothing written, try again later
    SHUTDOWN = "shutdown"  # the agent stopped before the job started


def format_error_code(exc: FormatError) -> str:
    """The outcome code of a file a reader refused, by the error's type."""
    if isinstance(exc, UnknownFormatError):
        return "unknown_format"
    if isinstance(exc, TruncatedError):
        return "truncated"
    return "format_error"


@dataclass(slots=True)
class WaferOutcome:
    """What became of one wafer of a job: its result, or the code and message that refused it."""

    index: int
    result: result_pb2.WaferResult | None = None
    error_code: str = ""
    error_message: str = ""
    result_id: str = ""  # assigned when the wafer is parsed: its logs carry it from then on
    trace: observe.WaferTrace | None = None


@dataclass(slots=True)
class JobOutcome:
    """What became of a job (see :class:`JobStatus`), with the error that refused it."""

    status: JobStatus
    error_code: str = ""
    error_message: str = ""
    location: str = ""
    wafers: list[WaferOutcome] = field(default_factory=list)
    record: FileRecord | None = None


@dataclass(slots=True)
class IngestJob:
    """One file to process, from the hot folder or gRPC, and its progress through the worker."""

    name: str  # the file's base name
    digest: str  # SHA-256 of its bytes
    origin: str  # "folder" | "grpc"
    path: Path | None = None
    content: bytes | None = None
    correlation_id: str = ""
    tester_id: str | None = None
    format_hint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    received_mono: float = field(default_factory=time.perf_counter)
    on_done: Callable[[IngestJob, JobOutcome], None] | None = None
    # filled while processing: each prepared wafer with the outcome it will fill in
    prepared: list[tuple[PreparedWafer, WaferOutcome]] = field(default_factory=list)
    outcome: JobOutcome | None = None
    span: Span | None = None  # edge.ingest (observe.py)

    def source(self) -> str | Source:
        if self.content is not None:
            return Source.from_bytes(self.content, self.name)
        assert self.path is not None
        return str(self.path)
