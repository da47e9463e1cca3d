"""The edge's alert engine: runs every configured rule (:mod:`.alert_rules`) on each result.

Condition rules' state is rebuilt from the stored results at start (:meth:`AlertEngine.seed`),
so a restart does not repeat an alert.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from waferscope.edge.alert_rules import NORMAL_PATTERN, RuleBase, RuleKind, rule_kind_of
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import alert_pb2, common_pb2, result_pb2

SEVERITY = {
    "info": common_pb2.SEVERITY_INFO,
    "warning": common_pb2.SEVERITY_WARNING,
    "error": common_pb2.SEVERITY_ERROR,
    "critical": common_pb2.SEVERITY_CRITICAL,
}

__all__ = ["NORMAL_PATTERN", "SEVERITY", "AlertEngine"]


class AlertEngine:
    """Runs the configured rules, in their order, on each result and rejected file."""

    def __init__(self, rules: Iterable[RuleBase], device_id: str) -> None:
        self.rules = list(rules)
        self.device_id = device_id
        self._kinds: list[RuleKind[Any]] = [rule_kind_of(r, self.make_alert) for r in self.rules]
        depth = max([k.history_depth for k in self._kinds] or [1])
        self._history: dict[str, deque[tuple[str, str]]] = defaultdict(lambda: deque(maxlen=depth))

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
        for kind in self._kinds:
            alerts += kind.on_result(result)
        return alerts

    def _evaluate(
        self, tester: str, pattern: str, result_id: str, low_confidence: bool, *, emit: bool
    ) -> list[alert_pb2.Alert]:
        alerts: list[alert_pb2.Alert] = []
        history = self._history[tester]
        history.append((pattern, result_id))
        for kind in self._kinds:
            alerts += kind.on_history(tester, history, result_id, low_confidence, emit)
        return alerts

    def on_rejected_file(
        self, name: str, code: str, reason: str, tester_id: str = ""
    ) -> list[alert_pb2.Alert]:
        alerts: list[alert_pb2.Alert] = []
        for kind in self._kinds:
            alerts += kind.on_rejected_file(name, code, reason, tester_id)
        return alerts
