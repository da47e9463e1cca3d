"""Edge alert rule kinds: each kind's settings and behaviour side by side, in one registry.

A kind is a settings model (a config section with ``kind: Literal["<name>"]``, validated from
``[[alerts.rules]]``) and a :class:`RuleKind` subclass that evaluates it, registered with
:func:`register`; the configuration refers to kinds by name and takes its list of settings
models from :data:`REGISTRY`, so a new kind is one more pair here.

Per-wafer rules (``pattern``, ``fail_density``, ``parse_failure``) raise one alert per wafer or
file. Condition rules (``pattern_repeat``, ``low_confidence_streak``) raise one alert when their
condition becomes true for a tester and pattern, and again only after it has cleared, so a lot
full of Edge-Ring wafers gives one alert, not one per wafer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field, model_validator

from waferscope.protocols.pb import alert_pb2, common_pb2, result_pb2
from waferscope.protocols.settings import Section

Severity = Literal["info", "warning", "error", "critical"]
NORMAL_PATTERN = "none"
AlertMaker = Callable[..., alert_pb2.Alert]
"""Builds one alert message (``AlertEngine.make_alert``)."""


class RuleBase(Section):
    id: str = Field(description="Rule id, carried in every alert it raises.")
    severity: Severity = Field(default="warning", description="Severity of the alerts.")


SettingsT = TypeVar("SettingsT", bound=RuleBase)


class RuleKind(Generic[SettingsT]):
    """The behaviour of one configured rule; one instance per rule per alert engine."""

    settings_model: ClassVar[type[RuleBase]]
    history_depth = 1  # results per tester this rule needs to see

    def __init__(self, settings: SettingsT, make_alert: AlertMaker) -> None:
        self.settings = settings
        self.make_alert = make_alert

    def alert(self, **fields: Any) -> alert_pb2.Alert:
        s = self.settings
        kind = getattr(s, "kind")  # noqa: B009 (every settings model has its Literal kind)
        return self.make_alert(rule_id=s.id, kind=kind, severity=s.severity, **fields)

    def wafer_alert(
        self, result: result_pb2.WaferResult, title: str, message: str
    ) -> alert_pb2.Alert:
        """An alert about one wafer, deduplicated per rule and wafer."""
        w = result.wafer
        return self.alert(
            title=title,
            message=message,
            dedup_key=f"{self.settings.id}:{w.tester_id}:{w.lot_id}:{w.wafer_id}",
            tester_id=w.tester_id,
            pattern=result.pattern.name,
            lot_id=w.lot_id,
            wafer_id=w.wafer_id,
            related=[result.result_id],
        )

    def on_history(
        self,
        tester: str,
        history: Sequence[tuple[str, str]],
        result_id: str,
        low_confidence: bool,
        emit: bool,
    ) -> list[alert_pb2.Alert]:
        """A tester's recent (pattern, result_id), newest last; also called when replaying."""
        return []

    def on_result(self, result: result_pb2.WaferResult) -> list[alert_pb2.Alert]:
        """One new result (never called when replaying)."""
        return []

    def on_rejected_file(
        self, name: str, code: str, reason: str, tester_id: str
    ) -> list[alert_pb2.Alert]:
        return []


REGISTRY: dict[str, type[RuleKind[Any]]] = {}
"""Rule kinds by name, in the order the configuration reference lists them."""


def register(name: str) -> Callable[[type[RuleKind[Any]]], type[RuleKind[Any]]]:
    """Class decorator: make a rule kind known under ``name`` (its settings' ``kind`` tag)."""

    def add(cls: type[RuleKind[Any]]) -> type[RuleKind[Any]]:
        if name in REGISTRY:
            raise ValueError(f"alert rule kind {name!r} is registered twice")
        REGISTRY[name] = cls
        return cls

    return add


def _ident(w: common_pb2.WaferIdentity) -> str:
    return f"lot {w.lot_id or '?'} wafer {w.wafer_id or '?'} ({w.source_name})"


# --------------------------------------------------------------------------- pattern
class PatternRule(RuleBase):
    """A critical pattern: any wafer classified as one of ``patterns``."""

    kind: Literal["pattern"]
    patterns: list[str] = Field(min_length=1, description="Pattern names that raise the alert.")
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Ignore less confident results."
    )


@register("pattern")
class PatternAlerts(RuleKind[PatternRule]):
    settings_model = PatternRule

    def on_result(self, result: result_pb2.WaferResult) -> list[alert_pb2.Alert]:
        rule, w = self.settings, result.wafer
        if result.pattern.name not in rule.patterns or result.confidence < rule.min_confidence:
            return []
        ident = _ident(w)
        return [
            self.wafer_alert(
                result,
                title=f"{result.pattern.name} on {ident}",
                message=f"{ident} on tester {w.tester_id or '?'} was classified "
                f"{result.pattern.name} with confidence {result.confidence:.2f}.",
            )
        ]


# --------------------------------------------------------------------------- pattern_repeat
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


@register("pattern_repeat")
class PatternRepeatAlerts(RuleKind[PatternRepeatRule]):
    settings_model = PatternRepeatRule

    def __init__(self, settings: PatternRepeatRule, make_alert: AlertMaker) -> None:
        super().__init__(settings, make_alert)
        self.history_depth = settings.m
        self._firing: set[tuple[str, str]] = set()  # (tester, pattern) already raised

    def on_history(
        self,
        tester: str,
        history: Sequence[tuple[str, str]],
        result_id: str,
        low_confidence: bool,
        emit: bool,
    ) -> list[alert_pb2.Alert]:
        rule = self.settings
        window = list(history)[-rule.m :]
        alerts = []
        watched = set(rule.patterns) or {p for p, _ in window if p != NORMAL_PATTERN}
        for name in sorted(watched):
            key = (tester, name)
            related = [rid for p, rid in window if p == name]
            if len(related) < rule.n:
                self._firing.discard(key)
                continue
            if key in self._firing:
                continue
            self._firing.add(key)
            if emit:
                who = tester or "?"
                alerts.append(
                    self.alert(
                        title=f"{name} on {len(related)} of the last {len(window)} wafers of "
                        f"tester {who}",
                        message=f"Tester {who}: {len(related)} of the last {len(window)} wafers "
                        f"show {name} (rule: {rule.n} of {rule.m}).",
                        dedup_key=f"{rule.id}:{tester}:{name}",
                        tester_id=tester,
                        pattern=name,
                        related=related,
                    )
                )
        return alerts


# --------------------------------------------------------------------------- fail_density
class FailDensityRule(RuleBase):
    """The share of failing dies of a wafer is above a threshold."""

    kind: Literal["fail_density"]
    threshold: float = Field(default=0.3, gt=0, le=1, description="Fail dies / tested dies.")


@register("fail_density")
class FailDensityAlerts(RuleKind[FailDensityRule]):
    settings_model = FailDensityRule

    def on_result(self, result: result_pb2.WaferResult) -> list[alert_pb2.Alert]:
        rule = self.settings
        if not result.die_count:
            return []
        density = result.fail_count / result.die_count
        if density <= rule.threshold:
            return []
        return [
            self.wafer_alert(
                result,
                title=f"fail density {density:.0%} on {_ident(result.wafer)}",
                message=f"{result.fail_count} of {result.die_count} dies failed "
                f"({density:.1%}, threshold {rule.threshold:.0%}).",
            )
        ]


# --------------------------------------------------------------------------- low_confidence_streak
class LowConfidenceStreakRule(RuleBase):
    """N wafers in a row of one tester flagged for review."""

    kind: Literal["low_confidence_streak"]
    n: int = Field(default=5, ge=1, description="Length of the streak.")


@register("low_confidence_streak")
class LowConfidenceStreakAlerts(RuleKind[LowConfidenceStreakRule]):
    settings_model = LowConfidenceStreakRule

    def __init__(self, settings: LowConfidenceStreakRule, make_alert: AlertMaker) -> None:
        super().__init__(settings, make_alert)
        self._streaks: dict[str, list[str]] = {}  # tester: result ids of the current streak

    def on_history(
        self,
        tester: str,
        history: Sequence[tuple[str, str]],
        result_id: str,
        low_confidence: bool,
        emit: bool,
    ) -> list[alert_pb2.Alert]:
        rule = self.settings
        streak = self._streaks.setdefault(tester, [])
        if not low_confidence:
            streak.clear()
            return []
        streak.append(result_id)
        if len(streak) != rule.n or not emit:
            return []
        who = tester or "?"
        return [
            self.alert(
                title=f"{rule.n} low-confidence wafers in a row on tester {who}",
                message=f"The last {rule.n} wafers of tester {who} were all below their review "
                "threshold: the model may not know these maps.",
                dedup_key=f"{rule.id}:{tester}",
                tester_id=tester,
                related=list(streak),
            )
        ]


# --------------------------------------------------------------------------- parse_failure
class ParseFailureRule(RuleBase):
    """A file was rejected (unreadable, truncated, invalid)."""

    kind: Literal["parse_failure"]


@register("parse_failure")
class ParseFailureAlerts(RuleKind[ParseFailureRule]):
    settings_model = ParseFailureRule

    def on_rejected_file(
        self, name: str, code: str, reason: str, tester_id: str
    ) -> list[alert_pb2.Alert]:
        return [
            self.alert(
                title=f"file {name} rejected ({code})",
                message=reason,
                dedup_key=f"{self.settings.id}:{name}",
                tester_id=tester_id,
            )
        ]


def rule_kind_of(settings: RuleBase, make_alert: AlertMaker) -> RuleKind[Any]:
    """The behaviour of one configured rule, found by its ``kind``."""
    return REGISTRY[getattr(settings, "kind")](settings, make_alert)  # noqa: B009
