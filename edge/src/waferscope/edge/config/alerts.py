"""Edge config of the alert rules: one model per rule kind, told apart by ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from waferscope.protocols.settings import Section

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
