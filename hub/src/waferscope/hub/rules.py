"""Hub-side alert rules across testers, run periodically over recent results.

* **same pattern in one lot** — one pattern seen on at least ``min_testers`` distinct testers
  among the wafers of one lot within ``window_s`` (a process problem upstream of test, not one
  tester's probe card). Fires once per (lot, pattern) and window.
* **pattern rate** — a pattern's share of all wafers in the last ``window_s`` exceeds ``factor``
  times its share in the ``baseline_s`` before that (floored at ``min_baseline_share``), with at
  least ``min_count`` wafers. Fleet-wide; the message names the testers that contribute most.
  Fires once per pattern and window.

Each alert is written with its deliveries in one transaction (see ``store/alerts.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, distinct, func, select

from waferscope.hub.config import AlertRulesConfig
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import Result
from waferscope.hub.metrics import HubMetrics
from waferscope.hub.notify.channels import Channel
from waferscope.hub.store.alerts import enqueue_deliveries, has_recent, insert_alerts
from waferscope.protocols.messages import new_message_id

log = logging.getLogger("waferscope.hub.rules")

LOT_RULE = "same-pattern-in-lot"
RATE_RULE = "pattern-rate"


def hub_alert_row(
    *,
    rule_id: str,
    kind: str,
    severity: str,
    title: str,
    message: str,
    now: datetime,
    dedup_key: str,
    pattern: str,
    related: list[str],
    device_id: str = "",
    lot_id: str = "",
    tester_id: str = "",
) -> dict[str, Any]:
    return {
        "alert_id": new_message_id(),
        "source": "hub",
        "device_id": device_id,
        "sequence": 0,
        "rule_id": rule_id,
        "rule_kind": kind,
        "severity": severity,
        "title": title[:255],
        "message": message,
        "raised_time": now,
        "ingested_at": now,
        "pattern": pattern,
        "tester_id": tester_id,
        "lot_id": lot_id,
        "wafer_id": "",
        "related_result_ids": related[:100] or None,
        "dedup_key": dedup_key,
        "acknowledged": False,
    }


class RuleRunner:
    def __init__(
        self,
        db: Database,
        config: AlertRulesConfig,
        channels: Sequence[Channel],
        metrics: HubMetrics,
    ) -> None:
        self.db = db
        self.config = config
        self.channels = [(c.name, c.min_severity) for c in channels]
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ rules
    def _lot_rule(self, conn: Connection, now: datetime) -> list[dict[str, Any]]:
        cfg = self.config.same_pattern_in_lot
        since = now - timedelta(seconds=cfg.window_s)
        r = Result.__table__.c
        testers = func.count(distinct(r.tester_id))
        stmt = (
            select(r.lot_id, r.pattern, testers)
            .where(
                r.classified_time >= since,
                r.confidence >= cfg.min_confidence,
                r.lot_id != "",
                r.tester_id != "",
                r.pattern.not_in(self.config.ignore_patterns),
            )
            .group_by(r.lot_id, r.pattern)
            .having(testers >= cfg.min_testers)
        )
        out = []
        for lot, pattern, n in conn.execute(stmt):
            key = f"{LOT_RULE}:{lot}:{pattern}"
            if has_recent(conn, key, since):
                continue
            rows = conn.execute(
                select(r.result_id, r.tester_id, r.device_id)
                .where(r.lot_id == lot, r.pattern == pattern, r.classified_time >= since)
                .order_by(r.classified_time)
                .limit(100)
            ).all()
            names = sorted({row.tester_id for row in rows})
            out.append(
                hub_alert_row(
                    rule_id=LOT_RULE,
                    kind="lot_pattern",
                    severity=cfg.severity,
                    title=f"{pattern} on {n} testers in lot {lot}",
                    message=f"Lot {lot}: {pattern} was classified on wafers of {n} testers "
                    f"({', '.join(names)}) within {cfg.window_s // 3600 or 1} h — likely a "
                    "process cause upstream of test rather than one tester.",
                    now=now,
                    dedup_key=key,
                    pattern=pattern,
                    related=[row.result_id for row in rows],
                    device_id=rows[0].device_id if rows else "",
                    lot_id=lot,
                    tester_id=",".join(names)[:64],
                )
            )
        return out

    def _counts(
        self, conn: Connection, start: datetime, end: datetime
    ) -> tuple[dict[str, int], int]:
        r = Result.__table__.c
        stmt = (
            select(r.pattern, func.count())
            .where(r.classified_time >= start, r.classified_time < end)
            .group_by(r.pattern)
        )
        counts = {str(p): int(n) for p, n in conn.execute(stmt)}
        return counts, sum(counts.values())

    def _rate_rule(self, conn: Connection, now: datetime) -> list[dict[str, Any]]:
        cfg = self.config.pattern_rate
        window_start = now - timedelta(seconds=cfg.window_s)
        recent, total = self._counts(conn, window_start, now + timedelta(seconds=1))
        if not total:
            return []
        base, base_total = self._counts(
            conn, window_start - timedelta(seconds=cfg.baseline_s), window_start
        )
        out = []
        r = Result.__table__.c
        for pattern, n in sorted(recent.items()):
            if pattern in self.config.ignore_patterns or n < cfg.min_count:
                continue
            share = n / total
            base_share = max(
                base.get(pattern, 0) / base_total if base_total else 0.0, cfg.min_baseline_share
            )
            if share <= cfg.factor * base_share:
                continue
            key = f"{RATE_RULE}:{pattern}"
            if has_recent(conn, key, window_start):
                continue
            top = conn.execute(
                select(r.tester_id, func.count())
                .where(r.pattern == pattern, r.classified_time >= window_start)
                .group_by(r.tester_id)
                .order_by(func.count().desc())
                .limit(5)
            ).all()
            related = (
                conn.execute(
                    select(r.result_id)
                    .where(r.pattern == pattern, r.classified_time >= window_start)
                    .order_by(r.classified_time.desc())
                    .limit(100)
                )
                .scalars()
                .all()
            )
            by_tester = ", ".join(f"{t or '?'} ({c})" for t, c in top)
            out.append(
                hub_alert_row(
                    rule_id=RATE_RULE,
                    kind="pattern_rate",
                    severity=cfg.severity,
                    title=f"{pattern} rate {share:.1%} vs baseline {base_share:.1%}",
                    message=f"{pattern} on {n} of {total} wafers in the last "
                    f"{cfg.window_s // 60} min ({share:.1%}); baseline {base_share:.1%} over the "
                    f"{cfg.baseline_s // 3600} h before. Testers: {by_tester}.",
                    now=now,
                    dedup_key=key,
                    pattern=pattern,
                    related=list(related),
                    tester_id=str(top[0][0]) if top else "",
                )
            )
        return out

    def run_once(self, now: datetime | None = None) -> list[str]:
        """Evaluate every rule; return the ids of the alerts raised."""
        now = now or utcnow()
        raised: list[str] = []
        with self.db.connect() as conn:
            rows: list[dict[str, Any]] = []
            if self.config.same_pattern_in_lot.enabled:
                rows += self._lot_rule(conn, now)
            if self.config.pattern_rate.enabled:
                rows += self._rate_rule(conn, now)
            new = insert_alerts(conn, rows)
            fresh = [(str(a["alert_id"]), str(a["severity"])) for a in rows if a["alert_id"] in new]
            if fresh and self.channels:
                enqueue_deliveries(conn, fresh, self.channels)
            raised = [a for a, _ in fresh]
        for row in rows:
            if row["alert_id"] in raised:
                self.metrics.hub_alerts.labels(rule=row["rule_id"]).inc()
                log.warning("hub alert %s: %s", row["rule_id"], row["title"])
        return raised

    def _run(self) -> None:
        while not self._stop.wait(self.config.evaluate_every_s):
            try:
                self.run_once()
            except Exception:  # keep evaluating whatever one round did
                log.exception("rule evaluation failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-rules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
