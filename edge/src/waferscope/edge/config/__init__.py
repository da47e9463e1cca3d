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
from typing import Literal

from pydantic import Field, field_validator, model_validator

from waferscope.edge.alert_rules import (
    FailDensityRule,
    LowConfidenceStreakRule,
    ParseFailureRule,
    PatternRepeatRule,
    PatternRule,
    RuleBase,
    Severity,
)
from waferscope.edge.config.alerts import RULE_KINDS, AlertRule, AlertsConfig
from waferscope.edge.config.ingest import (
    GrpcConfig,
    GrpcTlsConfig,
    HotFolderConfig,
    IngestConfig,
    StoreConfig,
)
from waferscope.edge.release_config import ReleaseConfig
from waferscope.protocols.errors import TopicError
from waferscope.protocols.settings import ClientTlsSection, Section, TracingSection
from waferscope.protocols.topics import validate_id

__all__ = [
    "RULE_KINDS",
    "AlertRule",
    "AlertsConfig",
    "EdgeConfig",
    "FailDensityRule",
    "GrpcConfig",
    "GrpcTlsConfig",
    "HotFolderConfig",
    "IngestConfig",
    "LowConfidenceStreakRule",
    "ModelConfig",
    "MqttConfig",
    "PanelConfig",
    "ParseFailureRule",
    "PatternRepeatRule",
    "PatternRule",
    "ReleaseConfig",
    "ReviewConfig",
    "RuleBase",
    "Section",
    "Severity",
    "StoreConfig",
    "TlsConfig",
    "TracingConfig",
]


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


# --------------------------------------------------------------------------- MQTT
TlsConfig = ClientTlsSection


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


# --------------------------------------------------------------------------- panel
class PanelAuthConfig(Section):
    """Operator login for the panel's state-changing actions (see docs/edge.md)."""

    operator_token_hash: str | None = Field(
        default=None,
        pattern=r"^scrypt\$",
        description="scrypt hash of the operator token ('waferscope edge panel-token-hash' "
        "prints one). Set: acknowledging an alert (form or API) needs a login on /login or "
        "'Authorization: Bearer <token>'. Empty: acknowledging is open to anyone who reaches "
        "the panel.",
    )
    session_hours: float = Field(
        default=12, gt=0, le=720, description="A login lasts this long (a restart ends it)."
    )

    @field_validator("operator_token_hash")
    @classmethod
    def _readable_hash(cls, value: str | None) -> str | None:
        if value is not None:
            from waferscope.edge.panel.operator_auth import parse_hash

            parse_hash(value)  # TokenHashError is a ValueError: reported as a config error
        return value


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
    read_only_open: bool = Field(
        default=True,
        description="Pages and the read-only API are open to anyone who reaches the panel. "
        "False (with panel.auth.operator_token_hash): they need a login too; /healthz, /readyz "
        "and /metrics stay open.",
    )
    auth: PanelAuthConfig = Field(default=PanelAuthConfig())

    @model_validator(mode="after")
    def _one_token(self) -> PanelConfig:
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set api_token or api_token_file, not both")
        if not self.read_only_open and self.auth.operator_token_hash is None:
            raise ValueError("read_only_open = false needs panel.auth.operator_token_hash")
        return self


# --------------------------------------------------------------------------- tracing
class TracingConfig(TracingSection):
    """OpenTelemetry tracing of each wafer's path (docs/observability.md). Off: no spans leave
    the agent and tracing costs next to nothing."""

    service_name: str = Field(
        default="waferscope-edge", min_length=1, description="The service.name of the spans."
    )
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of files traced (0..1, by trace id)."
    )


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
        grpc_tls = cfg.ingest.grpc.tls
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(grpc_tls, name)
            if value is not None:
                setattr(grpc_tls, name, _under(base, value))
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
