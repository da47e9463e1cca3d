"""Hub config sections of alerting: the cross-tester rules and where alerts are sent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from waferscope.protocols.settings import Section

# --------------------------------------------------------------------------- alerts
Severity = Literal["info", "warning", "error", "critical"]


class LotRuleConfig(Section):
    """The same pattern on several testers of one lot."""

    enabled: bool = Field(default=True, description="Evaluate this rule.")
    min_testers: int = Field(default=2, ge=2, description="Distinct testers that must see it.")
    window_s: int = Field(default=24 * 3600, ge=60, description="Look back this far.")
    min_confidence: float = Field(
        default=0.6, ge=0, le=1, description="Count only results at least this confident."
    )
    severity: Severity = Field(default="error", description="Severity of the alert.")


class RateRuleConfig(Section):
    """A pattern's share of recent wafers rising over its baseline."""

    enabled: bool = Field(default=True, description="Evaluate this rule.")
    window_s: int = Field(default=3600, ge=60, description="The recent window.")
    baseline_s: int = Field(
        default=7 * 24 * 3600, ge=3600, description="The baseline period before the window."
    )
    factor: float = Field(
        default=2.0, gt=1, description="Alert when the recent share exceeds baseline × factor."
    )
    min_count: int = Field(
        default=10, ge=1, description="...and at least this many recent wafers show the pattern."
    )
    min_baseline_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Floor for the baseline share (a pattern never seen before is compared "
        "against this).",
    )
    severity: Severity = Field(default="warning", description="Severity of the alert.")


class AlertRulesConfig(Section):
    """Hub-side alert rules across testers (edge alerts are stored as they come)."""

    evaluate_every_s: float = Field(
        default=30, gt=0, description="How often the rules run over recent results."
    )
    ignore_patterns: list[str] = Field(
        default_factory=lambda: ["none"], description="Patterns no rule alerts on."
    )
    same_pattern_in_lot: LotRuleConfig = Field(default=LotRuleConfig())
    pattern_rate: RateRuleConfig = Field(default=RateRuleConfig())


class WebhookConfig(Section):
    name: str = Field(description="Channel name, shown in delivery records.")
    url: str = Field(description="Receiver URL (POST, JSON body: the Alert's canonical JSON).")
    secret: SecretStr | None = Field(
        default=None,
        description="Shared secret: the body is signed with HMAC-SHA256 in the "
        "'X-Waferscope-Signature: t=<unix>,v1=<hex>' header over '<t>.<body>'.",
    )
    min_severity: Severity = Field(default="info", description="Send alerts at least this severe.")
    timeout_s: float = Field(default=10, gt=0, description="Request timeout.")


class MesConfig(Section):
    """A REST endpoint of the manufacturing execution system."""

    enabled: bool = Field(default=False, description="Send alerts to the MES.")
    url: str = Field(default="", description="Endpoint URL.")
    method: Literal["POST", "PUT"] = Field(default="POST", description="HTTP method.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (e.g. an API key)."
    )
    payload: dict[str, str] = Field(
        default_factory=lambda: {
            "eventType": "WAFER_PATTERN_ALERT",
            "eventId": "{alert_id}",
            "lot": "{lot_id}",
            "wafer": "{wafer_id}",
            "equipment": "{tester_id}",
            "pattern": "{pattern}",
            "severity": "{severity}",
            "text": "{title}",
        },
        description="Body fields: each value is a template with {field} placeholders from the "
        "alert (alert_id, device_id, rule_id, rule_kind, severity, title, message, pattern, "
        "tester_id, lot_id, wafer_id, raised_time, dedup_key).",
    )
    min_severity: Severity = Field(default="warning", description="Send alerts this severe.")
    timeout_s: float = Field(default=10, gt=0, description="Request timeout.")

    @model_validator(mode="after")
    def _url_when_enabled(self) -> MesConfig:
        if self.enabled and not self.url:
            raise ValueError("url is required when the MES channel is enabled")
        return self


class NotifyConfig(Section):
    """Where alerts are forwarded; every attempt is recorded as a delivery."""

    webhooks: list[WebhookConfig] = Field(default_factory=list, description="Webhook receivers.")
    mes: MesConfig = Field(default=MesConfig())
    max_attempts: int = Field(default=8, ge=1, le=100, description="Tries before giving up.")
    backoff_initial_s: float = Field(default=1.0, gt=0, description="First retry delay.")
    backoff_max_s: float = Field(default=300, gt=0, description="Longest retry delay.")
    poll_interval_s: float = Field(default=1.0, gt=0, description="How often deliveries run.")

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, hooks: list[WebhookConfig]) -> list[WebhookConfig]:
        names = [h.name for h in hooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes or "mes" in names:
            raise ValueError(f"webhook names must be unique and not 'mes': {dupes or ['mes']}")
        return hooks
