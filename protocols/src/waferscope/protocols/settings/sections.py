"""The base of every config section and the sections the edge and the hub share."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClientTlsSection(Section):
    """TLS of a client connection (the MQTT link of the edge and of the hub)."""

    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle; empty: the system's.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    insecure: bool = Field(
        default=False, description="Skip host-name checking (test set-ups only)."
    )


class TracingSection(Section):
    """OpenTelemetry tracing (docs/observability.md). Off: nothing is exported."""

    enabled: bool = Field(default=False, description="Record spans and export them over OTLP.")
    otlp_endpoint: str = Field(
        default="http://localhost:4318",
        description="OTLP/HTTP collector address ('/v1/traces' is added unless present).",
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for the collector (e.g. authorization)."
    )
    service_name: str = Field(
        default="waferscope", min_length=1, description="The service.name of the spans."
    )
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of traces kept (0..1, by trace id)."
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value
