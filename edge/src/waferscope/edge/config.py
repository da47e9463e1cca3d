"""The edge agent's configuration: one typed model, every field documented, unknown keys refused.

A configuration file is TOML (``edge.toml``) or YAML (``edge.yaml``); both map onto
:class:`EdgeConfig`. Every field has a default except ``device_id``, so three lines are enough::

    device_id = "prober-07"
    [mqtt]
    host = "broker.fab3.example"

Environment variables override the file at load time (see :mod:`waferscope.edge.config_loader`):
``WAFERSCOPE_EDGE__MQTT__PORT=8883`` sets ``mqtt.port``. The reference in
``docs/edge-config.md`` is generated from this module (``waferscope edge config-reference``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from waferscope.edge.release_config import ReleaseConfig
from waferscope.protocols.errors import TopicError
from waferscope.protocols.topics import validate_id


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- model
Provider = Literal["tensorrt", "cuda", "cpu"]
DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")


class ModelConfig(Section):
    """Which engine bundle to run and how."""

    path: Path | None = Field(
        default=None,
        description="Engine bundle folder (manifest.json, model.int8.onnx, head.npz). "
        "Empty: the bundle shipped with the agent (waferscope/edge/bundles/default).",
    )
    runner: Literal["onnxruntime", "tensorrt"] = Field(
        default="onnxruntime",
        description="Inference backend: 'onnxruntime' (CPU, or CUDA/TensorRT execution providers "
        "where present) or 'tensorrt' (native TensorRT engine, GPU only).",
    )
    providers: list[Provider] = Field(
        default_factory=lambda: list(DEFAULT_PROVIDERS),
        description="onnxruntime execution providers in order of preference; those not "
        "installed are skipped, 'cpu' is always the last resort.",
    )
    threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads for one inference (0: onnxruntime decides).",
    )
    max_batch: int = Field(
        default=32, ge=1, le=1024, description="Most wafers run through the engine in one call."
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="How long a wafer may wait for others to fill a micro-batch.",
    )
    warmup_runs: int = Field(
        default=2,
        ge=0,
        le=100,
        description="Inference runs at load time, before the model takes work.",
    )
    watch: bool = Field(
        default=True,
        description="Reload the bundle when its manifest.json changes (hot swap; the old model "
        "keeps running if the new one is refused).",
    )
    explain: bool = Field(default=True, description="Compute Grad-CAM heatmaps and hot regions.")
    hot_threshold: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Relevance (0..1) above which a die belongs to a hot region.",
    )
    max_hot_regions: int = Field(default=5, ge=0, le=100, description="Most hot regions per wafer.")


class ReviewConfig(Section):
    """When a result is flagged for expert review."""

    threshold: float = Field(
        default=0.6, ge=0, le=1, description="Confidence below which a wafer is flagged for review."
    )
    class_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-pattern thresholds overriding 'threshold', e.g. {Scratch = 0.8}.",
    )
    min_quality_score: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Quality score below which a wafer is flagged for review.",
    )

    @field_validator("class_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"threshold for {name!r} must be within 0..1, got {threshold}")
        return value


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


# --------------------------------------------------------------------------- MQTT
class TlsConfig(Section):
    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle; empty: the system's.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    insecure: bool = Field(
        default=False, description="Skip host-name checking (test set-ups only)."
    )


class MqttConfig(Section):
    """The link to the hub's broker."""

    enabled: bool = Field(default=True, description="Publish results, alerts and status.")
    host: str = Field(default="localhost", description="Broker host name or address.")
    port: int = Field(
        default=1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS)."
    )
    client_id: str | None = Field(default=None, description="MQTT client id. Empty: the device id.")
    username: str | None = Field(default=None, description="User name, if the broker wants one.")
    password: str | None = Field(default=None, description="Password (prefer password_file).")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    tls: TlsConfig = Field(default=TlsConfig())
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive interval.")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="How long the broker keeps the persistent session while the edge is away.",
    )
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        default=30, gt=0, description="Longest reconnect delay (backoff cap)."
    )
    max_inflight: int = Field(
        default=64, ge=1, le=65535, description="Messages published and not yet acknowledged."
    )
    heartbeat_s: float = Field(
        default=30, gt=0, description="Period of the retained status message."
    )
    include_embedding: bool = Field(
        default=True,
        description="Send each wafer's embedding (128 float32 for the shipped engine: about 0.5 "
        "KiB more per result in protobuf, about 1.4 KiB in JSON; the hub's similar-wafer search "
        "and embedding drift use it).",
    )
    include_heatmap: bool = Field(
        default=True, description="Send the heatmap inline in each result."
    )
    encoding: Literal["json", "protobuf"] = Field(
        default="json",
        description="Payload of results and alerts: canonical JSON (readable by people and MES "
        "tools) or binary protobuf (several times cheaper to encode and decode: for high result "
        "rates and long store-and-forward drains; the hub reads both, by the MQTT content type). "
        "Status, birth and last-will messages are always JSON.",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self


# --------------------------------------------------------------------------- alerts
Severity = Literal["info", "warning", "error", "critical"]


class RuleBase(Section):
    id: str = Field(description="Rule id, carried in every alert it raises.")
    severity: Severity = Field(default="warning", description="Severity of the alerts.")


class PatternRule(RuleBase):
    """A critical pattern: any wafer classified as one of ``patterns``."""

    kind: Literal["pattern"]
    patterns: list[str] = Field(min_length=1, description="Pattern names that raise the alert.")
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Ignore less confident results."
    )


class PatternRepeatRule(RuleBase):
    """N of the last M wafers of one tester share a pattern."""

    kind: Literal["pattern_repeat"]
    n: int = Field(default=3, ge=1, description="How many wafers must share the pattern...")
    m: int = Field(
        default=5, ge=1, description="...among this many most recent wafers of the tester."
    )
    patterns: list[str] = Field(
        default_factory=list, description="Patterns to watch; empty: every pattern except 'none'."
    )

    @model_validator(mode="after")
    def _n_within_m(self) -> PatternRepeatRule:
        if self.n > self.m:
            raise ValueError("n must not exceed m")
        return self


class FailDensityRule(RuleBase):
    """The share of failing dies of a wafer is above a threshold."""

    kind: Literal["fail_density"]
    threshold: float = Field(default=0.3, gt=0, le=1, description="Fail dies / tested dies.")


class LowConfidenceStreakRule(RuleBase):
    """N wafers in a row of one tester flagged for review."""

    kind: Literal["low_confidence_streak"]
    n: int = Field(default=5, ge=1, description="Length of the streak.")


class ParseFailureRule(RuleBase):
    """A file was rejected (unreadable, truncated, invalid)."""

    kind: Literal["parse_failure"]


AlertRule = Annotated[
    PatternRule | PatternRepeatRule | FailDensityRule | LowConfidenceStreakRule | ParseFailureRule,
    Field(discriminator="kind"),
]


RULE_KINDS = frozenset(
    {"pattern", "pattern_repeat", "fail_density", "low_confidence_streak", "parse_failure"}
)


def _default_rules() -> list[AlertRule]:
    return [
        ParseFailureRule(kind="parse_failure", id="parse-failure", severity="warning"),
        PatternRepeatRule(kind="pattern_repeat", id="pattern-repeat", severity="warning", n=3, m=5),
        LowConfidenceStreakRule(
            kind="low_confidence_streak", id="low-confidence-streak", severity="warning", n=5
        ),
    ]


class AlertsConfig(Section):
    rules: list[AlertRule] = Field(
        default_factory=_default_rules,
        description="Alert rules (kinds: pattern, pattern_repeat, fail_density, "
        "low_confidence_streak, parse_failure). An alert fires when its condition becomes true "
        "and again only after the condition has cleared.",
    )

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[AlertRule]) -> list[AlertRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules


# --------------------------------------------------------------------------- panel
class PanelConfig(Section):
    """The operator panel (local web page, JSON API, /metrics, /healthz, /readyz)."""

    enabled: bool = Field(default=True, description="Serve the panel.")
    host: str = Field(
        default="127.0.0.1", description="Address to listen on ('0.0.0.0': every one)."
    )
    port: int = Field(default=8080, ge=0, le=65535, description="Port (0: any free port).")
    refresh_s: int = Field(
        default=5, ge=1, le=3600, description="Pages reload themselves this often."
    )
    recent: int = Field(default=50, ge=1, le=1000, description="Wafers listed on the main page.")
    api_token: str | None = Field(
        default=None,
        min_length=16,
        description="Token (16 characters or more) POST /api/model/reload must send as "
        "'Authorization: Bearer <token>' (prefer api_token_file). Without one, a panel whose host "
        "is not loopback refuses every reload.",
    )
    api_token_file: Path | None = Field(default=None, description="File holding api_token.")
    reload_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders under which POST /api/model/reload may load a bundle, besides the "
        "folder holding model.path (or the shipped bundle).",
    )

    @model_validator(mode="after")
    def _one_token(self) -> PanelConfig:
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set api_token or api_token_file, not both")
        return self


# --------------------------------------------------------------------------- tracing
class TracingConfig(Section):
    """OpenTelemetry tracing of each wafer's path (docs/observability.md). Off: no spans leave
    the agent and tracing costs next to nothing."""

    enabled: bool = Field(default=False, description="Record spans and export them over OTLP.")
    otlp_endpoint: str = Field(
        default="http://localhost:4318",
        description="OTLP/HTTP collector address ('/v1/traces' is added unless present).",
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for the collector (e.g. authorization)."
    )
    service_name: str = Field(
        default="waferscope-edge", min_length=1, description="The service.name of the spans."
    )
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of files traced (0..1, by trace id)."
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


# --------------------------------------------------------------------------- root
class EdgeConfig(Section):
    """Configuration of one edge agent (one process per tester)."""

    device_id: str = Field(
        description="This agent's id: unique across the fleet; also the MQTT client id and "
        "topic level (letters, digits, '.', '_', '-')."
    )
    site: str | None = Field(default=None, description="Site (fab, floor) the device belongs to.")
    tester_id: str | None = Field(
        default=None, description="Tester this agent serves; fills in files that do not name one."
    )
    data_dir: Path = Field(
        default=Path("waferscope-edge-data"),
        description="Folder for the database and default ingest folders (relative paths are "
        "taken from the config file's folder).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging threshold."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines for people ('text') or one JSON object per line with the wafer's "
        "correlation fields ('json', docs/observability.md).",
    )
    model: ModelConfig = Field(default=ModelConfig())
    review: ReviewConfig = Field(default=ReviewConfig())
    ingest: IngestConfig = Field(default=IngestConfig())
    store: StoreConfig = Field(default=StoreConfig())
    mqtt: MqttConfig = Field(default=MqttConfig())
    alerts: AlertsConfig = Field(default=AlertsConfig())
    panel: PanelConfig = Field(default=PanelConfig())
    tracing: TracingConfig = Field(default=TracingConfig())
    release: ReleaseConfig = Field(default=ReleaseConfig())

    @field_validator("device_id", "site")
    @classmethod
    def _topic_ids(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_id(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    # ------------------------------------------------------------ resolved paths
    def resolve(self, base: Path) -> EdgeConfig:
        """A copy with every relative path taken from ``base`` and every default path filled."""
        cfg = self.model_copy(deep=True)
        data = _under(base, cfg.data_dir)
        cfg.data_dir = data
        hot = cfg.ingest.hot_folder
        hot.path = _under(base, hot.path) if hot.path else data / "incoming"
        hot.done_dir = _under(base, hot.done_dir) if hot.done_dir else hot.path.parent / "done"
        hot.rejected_dir = (
            _under(base, hot.rejected_dir) if hot.rejected_dir else hot.path.parent / "rejected"
        )
        cfg.store.path = _under(base, cfg.store.path) if cfg.store.path else data / "edge.sqlite"
        if cfg.model.path is not None:
            cfg.model.path = _under(base, cfg.model.path)
        tls = cfg.mqtt.tls
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(tls, name)
            if value is not None:
                setattr(tls, name, _under(base, value))
        if cfg.mqtt.password_file is not None:
            cfg.mqtt.password_file = _under(base, cfg.mqtt.password_file)
        if cfg.panel.api_token_file is not None:
            cfg.panel.api_token_file = _under(base, cfg.panel.api_token_file)
        cfg.panel.reload_dirs = [_under(base, d) for d in cfg.panel.reload_dirs]
        cfg.release = cfg.release.resolved(base, data)
        return cfg


def _under(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()
