"""The hub's configuration: one typed model, every field documented, unknown keys refused.

A configuration file is TOML (``hub.toml``) or YAML (``hub.yaml``); both map onto
:class:`HubConfig`. Every field has a default, so three lines are enough::

    data_dir = "/var/lib/waferscope-hub"
    [mqtt]
    host = "broker.fab3.example"

Environment variables override the file at load time (see :mod:`waferscope.hub.config_loader`):
``WAFERSCOPE_HUB__DATABASE__URL=postgresql://...`` sets ``database.url``. The reference in
``docs/hub-config.md`` is generated from this module (``waferscope hub config-reference``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from waferscope.hub.config.alerts import (
    AlertRulesConfig,
    LotRuleConfig,
    MesConfig,
    NotifyConfig,
    RateRuleConfig,
    Severity,
    WebhookConfig,
)
from waferscope.hub.config.storage import BlobConfig, DatabaseConfig, S3Config
from waferscope.hub.drift.config import DriftConfig
from waferscope.hub.federation.settings import FederationConfig
from waferscope.protocols.errors import TopicError
from waferscope.protocols.settings import ClientTlsSection, Section, TracingSection
from waferscope.protocols.topics import validate_id

__all__ = [
    "DEFAULT_SHARED_GROUP",
    "AlertRulesConfig",
    "AuthConfig",
    "BlobConfig",
    "DatabaseConfig",
    "EngineConfig",
    "HttpConfig",
    "HttpTlsConfig",
    "HubConfig",
    "IngestConfig",
    "LotRuleConfig",
    "MesConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "NotifyConfig",
    "RateRuleConfig",
    "ReviewConfig",
    "S3Config",
    "Section",
    "Severity",
    "TracingConfig",
    "WebhookConfig",
]

DEFAULT_SHARED_GROUP = "waferscope-hub"


# --------------------------------------------------------------------------- MQTT
MqttTlsConfig = ClientTlsSection


class MqttConfig(Section):
    """The hub's subscription to every edge (paho-mqtt 2, MQTT v5, QoS 1, persistent session)."""

    enabled: bool = Field(default=True, description="Ingest from the broker.")
    host: str = Field(default="localhost", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883: TLS).")
    client_id: str = Field(
        default="waferscope-hub",
        description="MQTT client id of ingest worker 0; worker i uses '<client_id>-<i>'. Keep it "
        "stable: the broker keeps the persistent session (and queued results) under this id.",
    )
    username: str | None = Field(default=None, description="User name, if the broker wants one.")
    password: SecretStr | None = Field(default=None, description="Password (or password_file).")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    shared_group: str | None = Field(
        default=None,
        description="MQTT v5 shared-subscription group for results, alerts, births and acks, so "
        "several ingest workers split the stream. Empty: plain subscriptions with one ingest "
        "worker, the group 'waferscope-hub' with several. Note: Mosquitto 2.0 does not restore "
        "shared subscriptions when it restarts (see docs/hub.md); plain subscriptions survive it.",
    )
    tls: MqttTlsConfig = Field(default=MqttTlsConfig())
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive interval.")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="How long the broker keeps the hub's session (and queues messages for it) "
        "while the hub is down.",
    )
    receive_maximum: int = Field(
        default=2000,
        ge=1,
        le=65535,
        description="Unacknowledged QoS 1 messages the broker may send at once. The hub "
        "acknowledges a message only after it is committed, so this bounds a batch; the broker "
        "must allow it too (Mosquitto: max_inflight_messages).",
    )
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30, gt=0, description="Longest reconnect delay.")

    @field_validator("shared_group")
    @classmethod
    def _group_id(cls, value: str | None) -> str | None:
        if value:
            try:
                validate_id(value, "subscription group")
            except TopicError as exc:
                raise ValueError(str(exc)) from None
        return value or None

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self


class IngestConfig(Section):
    """How received messages become database rows."""

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Ingest workers 'hub run' starts (worker 0 in the hub process, the others as "
        "'waferscope hub ingest' processes). They share the broker's stream through the "
        "shared subscription.",
    )
    batch_max: int = Field(
        default=500, ge=1, le=10_000, description="Most messages committed in one transaction."
    )
    batch_wait_ms: float = Field(
        default=20,
        ge=0,
        le=5000,
        description="How long the writer waits for more messages before committing a batch.",
    )
    store_embeddings: bool = Field(
        default=True, description="Keep each result's embedding (for similar-wafer search)."
    )
    commit_log: Path | None = Field(
        default=None,
        description="Append '<result_id> <unix time>' for every result as its transaction "
        "commits (for latency measurements, see benchmarks/README.md). Empty: off.",
    )
    dead_letter_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Bytes of a malformed payload kept in the dead-letter table.",
    )


# --------------------------------------------------------------------------- review
class ReviewConfig(Section):
    """Which results enter the expert review queue, and with what priority."""

    threshold: float = Field(
        default=0.6, ge=0, le=1, description="Results below this confidence enter the queue."
    )
    include_edge_flagged: bool = Field(
        default=True, description="Results the edge flagged for review enter the queue."
    )
    sample_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Share of confident results queued as an audit sample (drift measurement). "
        "The choice is a hash of the result id, so a redelivered result is chosen the same way.",
    )
    page_size: int = Field(default=50, ge=5, le=500, description="Rows per page in the UI lists.")
    selector: Literal["uncertainty_first", "entropy", "entropy_kcenter"] = Field(
        default="uncertainty_first",
        description="Queue selector (review_policy.SELECTORS): uncertainty_first (confidence "
        "threshold), entropy (normalised entropy of the class distribution) or entropy_kcenter "
        "(entropy times k-center distance over the engine's embeddings).",
    )
    entropy_threshold: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description="entropy selectors: results at or above this normalised entropy are queued.",
    )
    diversity_pool: int = Field(
        default=512,
        ge=2,
        le=20000,
        description="entropy_kcenter: embeddings of recently queued results kept as k-center "
        "centres (bounds memory and time per result).",
    )


class TrainingConfig(Section):
    """When the hub asks a training worker for a fine-tuned candidate (training jobs)."""

    label_trigger: int = Field(
        default=200,
        ge=0,
        description="Create a training job when this many reviewer labels were set or changed "
        "since the last job was created (0 = never on labels).",
    )
    drift_kinds: list[str] = Field(
        default_factory=lambda: ["drift"],
        description="Alerts whose rule kind is one of these create a training job (once per "
        "alert raised after the last job).",
    )
    log_max_chars: int = Field(
        default=200_000,
        ge=1000,
        description="A job keeps the tail of its worker's log up to this many characters.",
    )


# --------------------------------------------------------------------------- web
class HttpTlsConfig(Section):
    cert_file: Path | None = Field(default=None, description="Server certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Server key (PEM).")
    ca_file: Path | None = Field(default=None, description="CA for client certificates.")


class HttpConfig(Section):
    """The reviewers' UI, the REST API, /metrics, /healthz and /readyz."""

    enabled: bool = Field(default=True, description="Serve HTTP.")
    host: str = Field(default="127.0.0.1", description="Address ('0.0.0.0': every one).")
    port: int = Field(default=8400, ge=0, le=65535, description="Port (0: any free port).")
    tls: HttpTlsConfig = Field(default=HttpTlsConfig())
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="Largest wafer file a reviewer may upload."
    )


class AuthConfig(Section):
    """Local users, passwords (argon2id) and JWT bearer tokens."""

    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs tokens (32+ characters). Empty: a random key kept in "
        "<data_dir>/jwt.secret (every hub process of one installation must share it).",
    )
    token_ttl_s: int = Field(
        default=8 * 3600, ge=60, description="Lifetime of a login session or API token."
    )
    secure_cookies: bool = Field(
        default=False, description="Mark the session cookie 'Secure' (set it behind HTTPS)."
    )


# --------------------------------------------------------------------------- engine
class EngineConfig(Section):
    """The hub's copy of the current engine (classifying uploads, SHAP attributions)."""

    bundle: Path | None = Field(
        default=None,
        description="Engine bundle folder (as an edge loads it). Empty: uploaded wafers are "
        "stored unclassified and SHAP is unavailable.",
    )
    shap_grid: int = Field(
        default=8, ge=2, le=16, description="SHAP regions: the wafer is cut into grid × grid."
    )
    shap_samples: int = Field(
        default=256, ge=32, le=4096, description="Model evaluations per SHAP explanation."
    )
    threads: int = Field(default=1, ge=0, le=64, description="onnxruntime threads (0: auto).")


# --------------------------------------------------------------------------- releases
class ReleasesConfig(Section):
    """Signed engine releases (``.wsrelease``) the hub registers and rolls out to edges."""

    trusted_root_keys: list[Path] = Field(
        default_factory=list,
        description="Root public keys (PEM) a release's key delegation must be signed by. "
        "Empty: the hub registers no release.",
    )
    max_release_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Largest release file the hub accepts (at most [http] max_upload_bytes).",
    )
    transfer_bind: str = Field(
        default="127.0.0.1:8401",
        description="host:port of the hub's BundleTransfer gRPC service, which edges fetch "
        "release files from (port 0: any free port). Empty: no service, no rollouts.",
    )
    transfer_advertise: str | None = Field(
        default=None,
        description="host:port edges are told to fetch from (deploy commands). Empty: the "
        "bound address.",
    )
    rollout_tick_s: float = Field(
        default=2.0, gt=0, le=600, description="How often the rollout engine advances rollouts."
    )


# --------------------------------------------------------------------------- tracing
class TracingConfig(TracingSection):
    """OpenTelemetry tracing of the ingest (docs/observability.md): each message's span is a
    child of the edge span whose W3C traceparent came with it. Off: nothing is exported."""

    service_name: str = Field(
        default="waferscope-hub", min_length=1, description="The service.name of the spans."
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of traces started at the hub that are kept (0..1); messages follow "
        "the sampling decision the edge sent with them.",
    )


# --------------------------------------------------------------------------- root
class HubConfig(Section):
    """Configuration of the hub (every process of one installation reads the same file)."""

    data_dir: Path = Field(
        default=Path("waferscope-hub-data"),
        description="Folder for the SQLite database, blobs and the JWT key (relative paths are "
        "taken from the config file's folder).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging threshold."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines for people ('text') or one JSON object per line with each "
        "message's correlation fields ('json', docs/observability.md).",
    )
    database: DatabaseConfig = Field(default=DatabaseConfig())
    blobs: BlobConfig = Field(default=BlobConfig())
    mqtt: MqttConfig = Field(default=MqttConfig())
    ingest: IngestConfig = Field(default=IngestConfig())
    review: ReviewConfig = Field(default=ReviewConfig())
    training: TrainingConfig = Field(default=TrainingConfig())
    http: HttpConfig = Field(default=HttpConfig())
    auth: AuthConfig = Field(default=AuthConfig())
    alerts: AlertRulesConfig = Field(default=AlertRulesConfig())
    drift: DriftConfig = Field(default=DriftConfig())
    notify: NotifyConfig = Field(default=NotifyConfig())
    engine: EngineConfig = Field(default=EngineConfig())
    tracing: TracingConfig = Field(default=TracingConfig())
    federation: FederationConfig = Field(default=FederationConfig())
    releases: ReleasesConfig = Field(default=ReleasesConfig())

    # ------------------------------------------------------------------ derived
    def resolve(self, base: Path) -> HubConfig:
        """A copy whose relative paths are taken from ``base`` (the config file's folder)."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else base / p)

        cfg = self.model_copy(deep=True)
        cfg.data_dir = fix(cfg.data_dir) or cfg.data_dir
        cfg.blobs.path = fix(cfg.blobs.path)
        cfg.mqtt.password_file = fix(cfg.mqtt.password_file)
        for tls in (cfg.mqtt.tls, cfg.http.tls):
            tls.ca_file = fix(tls.ca_file)
            tls.cert_file = fix(tls.cert_file)
            tls.key_file = fix(tls.key_file)
        cfg.engine.bundle = fix(cfg.engine.bundle)
        cfg.ingest.commit_log = fix(cfg.ingest.commit_log)
        fed = cfg.federation
        fed.state_dir, fed.app_dir = fix(fed.state_dir), fix(fed.app_dir)
        fed.train_config = fix(fed.train_config)
        fed.release_key, fed.release_delegation = fix(fed.release_key), fix(fed.release_delegation)
        cfg.releases.trusted_root_keys = [fix(p) or p for p in cfg.releases.trusted_root_keys]
        return cfg

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in use (a SQLite file under data_dir unless one is given)."""
        url = self.database.url
        if not url:
            return f"sqlite:///{self.data_dir / 'hub.sqlite'}"
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def subscription_group(self) -> str | None:
        """The shared-subscription group in use (None: plain subscriptions)."""
        if self.mqtt.shared_group:
            return self.mqtt.shared_group
        return DEFAULT_SHARED_GROUP if self.ingest.workers > 1 else None

    @property
    def blob_path(self) -> Path:
        return self.blobs.path or self.data_dir / "blobs"
