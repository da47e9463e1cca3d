"""Edge config of the alert rules: a list of rule settings, each kind's model from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field, field_validator

from waferscope.edge.alert_rules import (
    REGISTRY,
    LowConfidenceStreakRule,
    ParseFailureRule,
    PatternRepeatRule,
    RuleBase,
)
from waferscope.protocols.settings import Section

__all__ = ["RULE_KINDS", "AlertRule", "AlertsConfig"]

if TYPE_CHECKING:
    AlertRule = RuleBase
else:  # one settings model per registered kind, told apart by ``kind``
    AlertRule = Annotated[
        Union[tuple(kind.settings_model for kind in REGISTRY.values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]

RULE_KINDS = frozenset(REGISTRY)
"""The names ``kind`` may take in ``[[alerts.rules]]``."""


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
        description=f"Alert rules (kinds: {', '.join(REGISTRY)}). An alert fires when its "
        "condition becomes true and again only after the condition has cleared.",
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
