"""The hub's tables (SQLAlchemy 2 declarative models); Alembic migrations follow this module.

Conventions: times are naive UTC ``DateTime`` columns (portable between SQLite and PostgreSQL);
message ids are the 36-character UUID strings of the messages; JSON columns hold the small,
variable parts of a result (distributions, findings, hot regions). Wafer maps and heatmaps live in
the blob store and the rows name them by key. Indexes follow the queries the UI and the rules make
(see ``docs/hub.md``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(36)  # a message UUID in its canonical text form
NAME = String(64)  # device / tester / lot / wafer ids, pattern and class names
KEY = String(120)  # blob keys


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table(model: type[Base]) -> Table:
    """The Core table of a model (for the ingest's bulk statements)."""
    return cast(Table, model.__table__)


class Device(Base):
    """An edge agent (one per tester), as its birth and status messages describe it."""

    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    site: Mapped[str | None] = mapped_column(NAME)
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    connection_id: Mapped[str | None] = mapped_column(ID)
    first_seen: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime)
    state_since: Mapped[datetime | None] = mapped_column(DateTime)
    agent_version: Mapped[str | None] = mapped_column(NAME)
    model_version: Mapped[str | None] = mapped_column(NAME)
    encoding_version: Mapped[int | None] = mapped_column(Integer)
    outbox_depth: Mapped[int | None] = mapped_column(BigInteger)
    degraded_reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    capabilities: Mapped[list[Any] | None] = mapped_column(JSON)
    platform: Mapped[str | None] = mapped_column(NAME)
    accelerator: Mapped[str | None] = mapped_column(String(128))
    config_digest: Mapped[str | None] = mapped_column(NAME)
    result_sequence_max: Mapped[int] = mapped_column(BigInteger, default=0)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(256))


class Tester(Base):
    """A wafer tester/prober, as the results name it."""

    __tablename__ = "testers"
    tester_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    device_id: Mapped[str | None] = mapped_column(NAME)
    first_seen: Mapped[datetime] = mapped_column(DateTime)


class Wafer(Base):
    """One tested wafer: identity, counts and the key of its compact map in the blob store."""

    __tablename__ = "wafers"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    lot_id: Mapped[str] = mapped_column(NAME, default="")
    wafer_id: Mapped[str] = mapped_column(NAME, default="")
    tester_id: Mapped[str] = mapped_column(NAME, default="")
    device_id: Mapped[str] = mapped_column(NAME, default="")
    program: Mapped[str] = mapped_column(String(128), default="")
    part_type: Mapped[str] = mapped_column(String(128), default="")
    source_name: Mapped[str] = mapped_column(String(255), default="")
    source_format: Mapped[str] = mapped_column(String(32), default="")
    wafer_index: Mapped[int] = mapped_column(Integer, default=0)
    test_start: Mapped[datetime | None] = mapped_column(DateTime)
    test_end: Mapped[datetime | None] = mapped_column(DateTime)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    die_count: Mapped[int] = mapped_column(Integer, default=0)
    pass_count: Mapped[int] = mapped_column(Integer, default=0)
    fail_count: Mapped[int] = mapped_column(Integer, default=0)
    yield_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    map_rows: Mapped[int] = mapped_column(Integer, default=0)
    map_cols: Mapped[int] = mapped_column(Integer, default=0)
    map_blob: Mapped[str | None] = mapped_column(KEY)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index(None, "lot_id", "wafer_id"),)


class Result(Base):
    """One classification of a wafer (from an edge, or from an upload on the hub)."""

    __tablename__ = "results"
    result_id: Mapped[str] = mapped_column(ID, primary_key=True)
    wafer_ref: Mapped[str] = mapped_column(ForeignKey("wafers.id"))
    device_id: Mapped[str] = mapped_column(NAME)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    correlation_id: Mapped[str] = mapped_column(String(128), default="")
    origin: Mapped[str] = mapped_column(String(16), default="edge")
    # identity copied from the wafer so that list filters need no join
    lot_id: Mapped[str] = mapped_column(NAME, default="")
    wafer_id: Mapped[str] = mapped_column(NAME, default="")
    tester_id: Mapped[str] = mapped_column(NAME, default="")
    received_time: Mapped[datetime | None] = mapped_column(DateTime)
    classified_time: Mapped[datetime] = mapped_column(DateTime)
    ingested_at: Mapped[datetime] = mapped_column(DateTime)
    pattern: Mapped[str] = mapped_column(NAME, default="")
    pattern_probability: Mapped[float] = mapped_column(Float, default=0.0)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    root_cause: Mapped[str] = mapped_column(NAME, default="")
    root_cause_probability: Mapped[float] = mapped_column(Float, default=0.0)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(NAME, default="")
    encoding_version: Mapped[int] = mapped_column(Integer, default=0)
    runtime_provider: Mapped[str] = mapped_column(NAME, default="")
    review_required: Mapped[bool] = mapped_column(Boolean, default=False)
    review_reason: Mapped[str] = mapped_column(String(48), default="")
    review_detail: Mapped[str] = mapped_column(Text, default="")
    quality_score: Mapped[float] = mapped_column(Float, default=1.0)
    quality_findings: Mapped[list[Any] | None] = mapped_column(JSON)
    hot_regions: Mapped[list[Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)

    # Lists order by (classified_time, result_id) descending; trends count patterns per tester
    # and day (the tester index covers that query, so it reads no table rows).
    __table_args__ = (
        Index(None, "classified_time", "result_id"),
        Index(None, "tester_id", "classified_time", "pattern"),
        Index(None, "lot_id", "classified_time"),
        Index(None, "pattern", "classified_time"),
        Index(None, "model_version", "classified_time", "result_id"),
        Index(None, "device_id", "sequence"),
        Index(None, "wafer_ref"),
        Index(None, "device_id", "model_version", "classified_time"),  # drift windows
    )


class Heatmap(Base):
    """The Grad-CAM relevance map of a result (bytes in the blob store)."""

    __tablename__ = "heatmaps"
    result_id: Mapped[str] = mapped_column(ForeignKey("results.result_id"), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    cols: Mapped[int] = mapped_column(Integer)
    blob: Mapped[str] = mapped_column(KEY)
    target_class: Mapped[str] = mapped_column(NAME, default="")
    method: Mapped[str] = mapped_column(String(32), default="")


class ReviewItem(Base):
    """A result waiting for (or done with) expert review: the review queue."""

    __tablename__ = "review_queue"
    result_id: Mapped[str] = mapped_column(ForeignKey("results.result_id"), primary_key=True)
    priority: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="open")
    enqueued_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    closed_by: Mapped[str | None] = mapped_column(NAME)

    __table_args__ = (Index(None, "state", "priority", "enqueued_at"),)


class Review(Base):
    """One reviewer decision: confirm or correct the pattern and the root cause."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.result_id"))
    reviewer: Mapped[str] = mapped_column(NAME)
    action: Mapped[str] = mapped_column(String(16))  # confirm | correct
    pattern: Mapped[str] = mapped_column(NAME)
    root_cause: Mapped[str] = mapped_column(NAME, default="")
    predicted_pattern: Mapped[str] = mapped_column(NAME, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index(None, "result_id"), Index(None, "created_at"))


class Label(Base):
    """The ground truth of a wafer (the latest review wins); what training reads."""

    __tablename__ = "labels"
    wafer_ref: Mapped[str] = mapped_column(ForeignKey("wafers.id"), primary_key=True)
    result_id: Mapped[str] = mapped_column(ID)
    pattern: Mapped[str] = mapped_column(NAME)
    root_cause: Mapped[str] = mapped_column(NAME, default="")
    review_id: Mapped[int | None] = mapped_column(Integer)
    labelled_by: Mapped[str] = mapped_column(NAME)
    labelled_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index(None, "labelled_at"),)


class AlertRow(Base):
    """An alert from an edge or from a hub rule."""

    __tablename__ = "alerts"
    alert_id: Mapped[str] = mapped_column(ID, primary_key=True)
    source: Mapped[str] = mapped_column(String(8))  # edge | hub
    device_id: Mapped[str] = mapped_column(NAME, default="")
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    rule_id: Mapped[str] = mapped_column(NAME, default="")
    rule_kind: Mapped[str] = mapped_column(NAME, default="")
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    title: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    raised_time: Mapped[datetime] = mapped_column(DateTime)
    ingested_at: Mapped[datetime] = mapped_column(DateTime)
    pattern: Mapped[str] = mapped_column(NAME, default="")
    tester_id: Mapped[str] = mapped_column(NAME, default="")
    lot_id: Mapped[str] = mapped_column(NAME, default="")
    wafer_id: Mapped[str] = mapped_column(NAME, default="")
    related_result_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    dedup_key: Mapped[str] = mapped_column(String(255), default="")
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(NAME)
    acknowledged_time: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index(None, "acknowledged", "raised_time"),
        Index(None, "raised_time"),
        Index(None, "dedup_key"),
    )


class Delivery(Base):
    """One alert to one notification channel (webhook or MES), with its delivery state."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id"))
    channel: Mapped[str] = mapped_column(NAME)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        Index(None, "state", "next_attempt_at"),
    )


class ModelVersion(Base):
    """An engine bundle known to the hub (the registry)."""

    __tablename__ = "models"
    model_version: Mapped[str] = mapped_column(NAME, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bundle_blob: Mapped[str] = mapped_column(KEY)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="registered")
    registered_by: Mapped[str] = mapped_column(NAME, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Release(Base):
    """A signed engine release (``.wsrelease``) the hub verified and keeps in the blob store."""

    __tablename__ = "releases"
    release_id: Mapped[str] = mapped_column(ID, primary_key=True)
    channel: Mapped[str] = mapped_column(NAME)
    version: Mapped[int] = mapped_column(BigInteger)
    model_version: Mapped[str] = mapped_column(NAME)
    sha256: Mapped[str] = mapped_column(String(64))  # of the release file
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob: Mapped[str] = mapped_column(KEY)
    content_digest: Mapped[str] = mapped_column(String(64))  # of the signed manifest
    key_id: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    registered_by: Mapped[str] = mapped_column(NAME, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("channel", "version"),)


class Rollout(Base):
    """A staged deployment of a release to a device group (hub/rollout/, docs/hub.md)."""

    __tablename__ = "rollouts"
    rollout_id: Mapped[str] = mapped_column(ID, primary_key=True)
    release_id: Mapped[str] = mapped_column(ForeignKey("releases.release_id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    wave: Mapped[int] = mapped_column(Integer, default=0)  # the open wave (0-based)
    waves: Mapped[list[Any]] = mapped_column(JSON)  # the wave specs as asked
    gates: Mapped[dict[str, Any]] = mapped_column(JSON)
    wave_results: Mapped[list[Any] | None] = mapped_column(JSON)  # gate figures per wave
    group: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # devices / site asked for
    reason: Mapped[str] = mapped_column(Text, default="")
    wave_started_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(NAME, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index(None, "release_id"), Index(None, "state"))


class RolloutDevice(Base):
    """One device of a rollout: its wave, the commands sent, what it answered."""

    __tablename__ = "rollout_devices"
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.rollout_id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    command_id: Mapped[str | None] = mapped_column(ID, unique=True)
    rollback_command_id: Mapped[str | None] = mapped_column(ID, unique=True)
    previous_model_version: Mapped[str | None] = mapped_column(NAME)
    active_model_version: Mapped[str | None] = mapped_column(NAME)
    last_ack: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # install commands sent
    error: Mapped[str] = mapped_column(Text, default="")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the last shadow report
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class User(Base):
    """A local user of the UI and API."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(NAME, unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # operator | reviewer | engineer | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_login: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEntry(Base):
    """Who did what: logins, label changes, model actions, exports, user changes."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(NAME)
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")

    __table_args__ = (Index(None, "at"), Index(None, "action", "at"))


class DeadLetter(Base):
    """A message the ingest could not use, kept for inspection (never retried automatically)."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    topic: Mapped[str] = mapped_column(String(512))
    device_id: Mapped[str] = mapped_column(NAME, default="")
    error: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index(None, "received_at"),)


class DriftSnapshot(Base):
    """One drift run's figures for one (device, model version): reference vs current window."""

    __tablename__ = "drift_snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime)
    device_id: Mapped[str] = mapped_column(NAME)
    model_version: Mapped[str] = mapped_column(NAME)
    status: Mapped[str] = mapped_column(String(16))  # ok | drift | insufficient
    reference_n: Mapped[int] = mapped_column(Integer, default=0)
    current_n: Mapped[int] = mapped_column(Integer, default=0)
    reference_start: Mapped[datetime | None] = mapped_column(DateTime)
    reference_end: Mapped[datetime | None] = mapped_column(DateTime)
    current_start: Mapped[datetime | None] = mapped_column(DateTime)
    current_end: Mapped[datetime | None] = mapped_column(DateTime)
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    reference_counts: Mapped[list[Any] | None] = mapped_column(JSON)
    current_counts: Mapped[list[Any] | None] = mapped_column(JSON)
    chi2: Mapped[float | None] = mapped_column(Float)
    class_p: Mapped[float | None] = mapped_column(Float)
    class_p_adjusted: Mapped[float | None] = mapped_column(Float)
    js_distance: Mapped[float | None] = mapped_column(Float)
    psi: Mapped[float | None] = mapped_column(Float)
    embedding_n: Mapped[int] = mapped_column(Integer, default=0)
    mmd2: Mapped[float | None] = mapped_column(Float)
    mmd_p: Mapped[float | None] = mapped_column(Float)
    mmd_p_adjusted: Mapped[float | None] = mapped_column(Float)
    correction: Mapped[str] = mapped_column(String(8), default="bh")

    __table_args__ = (
        Index(None, "computed_at"),
        Index(None, "device_id", "model_version", "computed_at"),
    )


PG_VECTOR_TABLES = ("result_vectors",)
"""Tables only a PostgreSQL with pgvector has (migration 0003 creates them there; the portable
models above do not describe them): ``result_vectors`` holds each result's embedding as a
``vector`` for the similar-wafer search (``waferscope.hub.similar_pg``)."""


class TrainingJob(Base):
    """A fine-tuning run asked of a training worker: why, who took it, how far, what came out.

    States: queued -> running -> succeeded | failed. A failed job names its reason and never
    carries a release id (the worker registers the release before it reports success).
    """

    __tablename__ = "training_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(16))  # labels | drift | manual
    detail: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(NAME, default="")
    labels_total: Mapped[int] = mapped_column(Integer, default=0)  # labels when it was created
    worker: Mapped[str | None] = mapped_column(NAME)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    stage: Mapped[str] = mapped_column(NAME, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    release_id: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(NAME)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "state", "created_at"),)


class LabelDispatch(Base):
    """A reviewer's label waiting for (or sent to) the edge that produced the wafer.

    Written in the review's transaction, so no label is lost when the broker is away; the label
    publisher sends pending rows on the edge's ``label`` topic (QoS 1) and stamps ``sent_at``
    once the broker has acknowledged them.
    """

    __tablename__ = "label_dispatch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label_id: Mapped[str] = mapped_column(ID, unique=True)
    result_id: Mapped[str] = mapped_column(ID)
    device_id: Mapped[str] = mapped_column(NAME)
    site: Mapped[str | None] = mapped_column(NAME)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # binary protobuf WaferLabel
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index(None, "sent_at", "id"), Index(None, "device_id", "created_at"))
