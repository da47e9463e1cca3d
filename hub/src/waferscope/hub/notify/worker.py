"""The delivery loop: sends pending deliveries, records every attempt, retries with backoff.

Deliveries are rows (created in the same transaction as their alert), so a hub restart neither
loses nor repeats a delivered notification; a delivery in flight when the hub dies is sent again
(receivers drop repeats by ``X-Waferscope-Delivery``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta

from waferscope.hub.config import NotifyConfig
from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import AlertRow
from waferscope.hub.metrics import HubMetrics
from waferscope.hub.notify.channels import Channel, SendResult
from waferscope.hub.store.alerts import due_deliveries, record_attempt, to_message

log = logging.getLogger("waferscope.hub.notify")


def backoff(attempt: int, config: NotifyConfig) -> timedelta:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1): doubling, capped."""
    seconds = min(config.backoff_initial_s * 2 ** (attempt - 1), config.backoff_max_s)
    return timedelta(seconds=seconds)


class Notifier:
    def __init__(
        self,
        db: Database,
        channels: Sequence[Channel],
        config: NotifyConfig,
        metrics: HubMetrics,
    ) -> None:
        self.db = db
        self.channels = {c.name: c for c in channels}
        self.config = config
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Send every delivery that is due; return how many attempts were made."""
        with self.db.session() as s:
            due = [
                (d.id, d.alert_id, d.channel, d.attempts)
                for d in due_deliveries(s, now=utcnow(), limit=50)
            ]
            alerts = {
                a: to_message(row)
                for a in {d[1] for d in due}
                if (row := s.get(AlertRow, a)) is not None
            }
        for delivery_id, alert_id, channel_name, attempts in due:
            channel = self.channels.get(channel_name)
            if channel is None:
                result = SendResult(
                    False, None, f"channel {channel_name!r} is not configured", False
                )
            else:
                result = channel.send(alerts[alert_id], delivery_id=delivery_id)
            attempt = attempts + 1
            retry = None
            if not result.ok and result.retryable and attempt < self.config.max_attempts:
                retry = backoff(attempt, self.config)
            with self.db.session(write=True) as s:
                record_attempt(
                    s,
                    delivery_id,
                    ok=result.ok,
                    status_code=result.status_code,
                    error=result.error,
                    retry_in=retry,
                )
            outcome = "delivered" if result.ok else ("retry" if retry else "failed")
            self.metrics.deliveries.labels(channel=channel_name, outcome=outcome).inc()
            if not result.ok:
                log.warning(
                    "delivery %s of alert %s to %s: %s (%s)",
                    delivery_id,
                    alert_id,
                    channel_name,
                    result.error,
                    outcome,
                )
        return len(due)

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.run_once()
            except Exception:  # keep notifying whatever one round did
                log.exception("notification round failed")

    def start(self) -> None:
        if not self.channels:
            return
        self._thread = threading.Thread(target=self._run, name="hub-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
