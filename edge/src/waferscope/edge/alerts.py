"""Alert rules evaluated on the edge, wafer by wafer (configured in ``[[alerts.rules]]``).

Per-wafer rules (``pattern``, ``fail_density``, ``parse_failure``) raise one alert per wafer or
file. Condition rules (``pattern_repeat``, ``low_confidence_streak``) raise one alert when their
condition becomes true for a tester and pattern, and again only after it has cleared, so a lot
full of Edge-Ring wafers gives one alert, not one per wafer. Their state is rebuilt from the
stored results at start, so a restart does not repeat an alert.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime

from waferscope.edge.config import (
    AlertRule,
    FailDensityRule,
    LowConfidenceStreakRule,
    ParseFailureRule,
    PatternRepeatRule,
    PatternRule,
)
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import alert_pb2, common_pb2, result_pb2

SEVERITY = {
    "info": common_pb2.SEVERITY_INFO,
    "warning": common_pb2.SEVERITY_WARNING,
    "error": common_pb2.SEVERITY_ERROR,
    "critical": common_pb2.SEVERITY_CRITICAL,
}
NORMAL_PATTERN = "none"


class AlertEngine:
    def __init__(self, rules: Iterable[AlertRule], device_id: str) -> None:
        self.rules = list(rules)
        self.device_id = device_id
        depth = max([r.m for r in self.rules if isinstance(r, PatternRepeatRule)] or [1])
        self._history: dict[str, deque[tuple[str, str]]] = defaultdict(lambda: deque(maxlen=depth))
        self._streak: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._firing: set[tuple[str, str, str]] = set()  # (rule, tester, pattern) already raised

    # ------------------------------------------------------------------ messages
    def make_alert(
        self,
        *,
        rule_id: str,
        kind: str,
        severity: str,
        title: str,
        message: str,
        dedup_key: str,
        tester_id: str = "",
        pattern: str = "",
        lot_id: str = "",
        wafer_id: str = "",
        related: Iterable[str] = (),
    ) -> alert_pb2.Alert:
        alert = alert_pb2.Alert(
            alert_id=new_message_id(),
            device_id=self.device_id,
            source=alert_pb2.ALERT_SOURCE_EDGE,
            rule_id=rule_id,
            rule_kind=kind,
            severity=SEVERITY[severity],
            title=title,
            message=message,
            pattern=pattern,
            tester_id=tester_id,
            lot_id=lot_id,
            wafer_id=wafer_id,
            related_result_ids=list(related),
            dedup_key=dedup_key,
        )
        alert.raised_time.FromDatetime(datetime.now(UTC))
        return alert

    # ------------------------------------------------------------------ evaluation
    def seed(self, history: Iterable[tuple[str, str, str, bool]]) -> None:
        """Replay stored results (tester, pattern, result_id, review), oldest first, silently."""
        for tester, pattern, result_id, review in history:
            self._evaluate(tester, pattern, result_id, review, emit=False)

    def on_result(self, result: result_pb2.WaferResult) -> list[alert_pb2.Alert]:
        w = result.wafer
        alerts = self._evaluate(
            w.tester_id,
            result.pattern.name,
            result.result_id,
            result.review_required
            and result.review_reason == result_pb2.REVIEW_REASON_LOW_CONFIDENCE,
            emit=True,
        )
        for rule in self.rules:
            ident = f"lot {w.lot_id or '?'} wafer {w.wafer_id or '?'} ({w.source_name})"
            if isinstance(rule, PatternRule) and result.pattern.name in rule.patterns:
                if result.confidence >= rule.min_confidence:
                    alerts.append(
                        self.make_alert(
                            rule_id=rule.id,
                            kind=rule.kind,
                            severity=rule.severity,
                            title=f"{result.pattern.name} on {ident}",
                            message=f"{ident} on tester {w.tester_id or '?'} was classified "
                            f"{result.pattern.name} with confidence {result.confidence:.2f}.",
                            dedup_key=f"{rule.id}:{w.tester_id}:{w.lot_id}:{w.wafer_id}",
                            tester_id=w.tester_id,
                            pattern=result.pattern.name,
                            lot_id=w.lot_id,
                            wafer_id=w.wafer_id,
                            related=[result.result_id],
                        )
                    )
            elif isinstance(rule, FailDensityRule) and result.die_count:
                density = result.fail_count / result.die_count
                if density > rule.threshold:
                    alerts.append(
                        self.make_alert(
                            rule_id=rule.id,
                            kind=rule.kind,
                            severity=rule.severity,
                            title=f"fail density {density:.0%} on {ident}",
                            message=f"{result.fail_count} of {result.die_count} dies failed "
                            f"({density:.1%}, threshold {rule.threshold:.0%}).",
                            dedup_key=f"{rule.id}:{w.tester_id}:{w.lot_id}:{w.wafer_id}",
                            tester_id=w.tester_id,
                            pattern=result.pattern.name,
                            lot_id=w.lot_id,
                            wafer_id=w.wafer_id,
                            related=[result.result_id],
                        )
                    )
        return alerts

    def _evaluate(
        self, tester: str, pattern: str, result_id: str, low_confidence: bool, *, emit: bool
    ) -> list[alert_pb2.Alert]:
        alerts: list[alert_pb2.Alert] = []
        history = self._history[tester]
        history.append((pattern, result_id))
        for rule in self.rules:
            if isinstance(rule, PatternRepeatRule):
                alerts += self._repeat(rule, tester, list(history)[-rule.m :], emit)
            elif isinstance(rule, LowConfidenceStreakRule):
                alerts += self._streak_rule(rule, tester, result_id, low_confidence, emit)
        return alerts

    def _repeat(
        self, rule: PatternRepeatRule, tester: str, window: list[tuple[str, str]], emit: bool
    ) -> list[alert_pb2.Alert]:
        alerts = []
        watched = set(rule.patterns) or {p for p, _ in window if p != NORMAL_PATTERN}
        for name in sorted(watched):
            key = (rule.id, tester, name)
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
                    self.make_alert(
                        rule_id=rule.id,
                        kind=rule.kind,
                        severity=rule.severity,
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

    def _streak_rule(
        self,
        rule: LowConfidenceStreakRule,
        tester: str,
        result_id: str,
        low_confidence: bool,
        emit: bool,
    ) -> list[alert_pb2.Alert]:
        streak = self._streak[(rule.id, tester)]
        if not low_confidence:
            streak.clear()
            return []
        streak.append(result_id)
        if len(streak) != rule.n or not emit:
            return []
        who = tester or "?"
        return [
            self.make_alert(
                rule_id=rule.id,
                kind=rule.kind,
                severity=rule.severity,
                title=f"{rule.n} low-confidence wafers in a row on tester {who}",
                message=f"The last {rule.n} wafers of tester {who} were all below their review "
                "threshold: the model may not know these maps.",
                dedup_key=f"{rule.id}:{tester}",
                tester_id=tester,
                related=list(streak),
            )
        ]

    def on_rejected_file(
        self, name: str, code: str, reason: str, tester_id: str = ""
    ) -> list[alert_pb2.Alert]:
        return [
            self.make_alert(
                rule_id=rule.id,
                kind=rule.kind,
                severity=rule.severity,
                title=f"file {name} rejected ({code})",
                message=reason,
                dedup_key=f"{rule.id}:{name}",
                tester_id=tester_id,
            )
            for rule in self.rules
            if isinstance(rule, ParseFailureRule)
        ]
