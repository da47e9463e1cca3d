"""Prometheus metrics of one hub process (served at /metrics).

Each :class:`HubMetrics` has its own registry, so several hubs in one process (tests) do not
collide. Worker processes started by ``hub run`` expose nothing over HTTP; their figures show in
the database (results, dead letters) and in their logs.

The state the database holds (devices as their status messages describe them, the open review
queue) is read when Prometheus scrapes (:meth:`HubMetrics.bind_database`), so every process
serving /metrics reports the same figures whichever worker ingested the messages. The metric
names are listed in docs/observability.md; the alert rules and the dashboard under
``monitoring/`` use them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from waferscope.hub.db.engine import Database

log = logging.getLogger("waferscope.hub.metrics")

DEVICE_STATES = ("online", "degraded", "offline", "unknown")
"""The values of the devices table's ``state`` column (see ``store/ingest.py``)."""

DEGRADED_REASONS = ("disk_low", "store_full", "outbox_backlog", "model_refused")
"""The reasons an edge reports with DEGRADED (edge ``device_info.py``); others show when sent."""

LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)
"""Ingest lag reaches hours when an edge drains its outbox after a long outage."""


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    """One device as the hub last heard of it."""

    device_id: str
    state: str
    last_seen: datetime | None  # naive UTC, as stored
    outbox_depth: int | None
    degraded_reasons: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class HubState:
    """What the scrape-time collector reports."""

    devices: Sequence[DeviceFigures] = ()
    review_open: Mapping[str, int] = field(default_factory=dict)


def _unix(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp() if value.tzinfo is None else value.timestamp()


class _StateCollector(Collector):
    """Devices and the review queue, read at scrape time.

    A failing read (database unreachable) yields no samples and logs a warning rather than
    failing the whole scrape: ``up`` stays 1 and the ingest figures stay visible.
    """

    def __init__(self, read: Callable[[], HubState]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return ()  # samples depend on the database; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        try:
            state = self._read()
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("cannot read devices and review queue for /metrics: %s", exc)
            return
        states = GaugeMetricFamily(
            "waferscope_hub_device_state",
            "1 for the state the hub holds for each device (online, degraded, offline, unknown)",
            labels=["device", "state"],
        )
        seen = GaugeMetricFamily(
            "waferscope_hub_device_last_seen_timestamp_seconds",
            "When the hub last received any message of the device (Unix time)",
            labels=["device"],
        )
        outbox = GaugeMetricFamily(
            "waferscope_hub_device_outbox_depth",
            "Outbox depth the device last reported in its status",
            labels=["device"],
        )
        degraded = GaugeMetricFamily(
            "waferscope_hub_device_degraded",
            "1 while the device reports itself degraded for this reason (store_full, "
            "model_refused, disk_low, outbox_backlog, ...)",
            labels=["device", "reason"],
        )
        for d in state.devices:
            for s in DEVICE_STATES:
                states.add_metric([d.device_id, s], 1.0 if d.state == s else 0.0)
            # the stored reasons outlive a disconnect: only a DEGRADED device has current ones
            current = set(d.degraded_reasons) if d.state == "degraded" else set()
            for reason in sorted(set(DEGRADED_REASONS) | set(d.degraded_reasons)):
                degraded.add_metric([d.device_id, reason], 1.0 if reason in current else 0.0)
            if d.last_seen is not None:
                seen.add_metric([d.device_id], _unix(d.last_seen))
            if d.outbox_depth is not None:
                outbox.add_metric([d.device_id], float(d.outbox_depth))
        queue = GaugeMetricFamily(
            "waferscope_hub_review_queue_open",
            "Open items in the review queue, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(state.review_open.items()):
            queue.add_metric([reason], float(n))
        yield from (states, degraded, seen, outbox, queue)


def database_state(db: Database) -> HubState:
    """Devices and open review items, as stored (two small queries)."""
    from waferscope.hub.review_policy import AUDIT, EDGE_FLAGGED, LOW_CONFIDENCE
    from waferscope.hub.store.queries import devices, queue_counts

    with db.session() as s:
        rows = [
            DeviceFigures(
                d.device_id,
                d.state or "unknown",
                d.last_seen,
                d.outbox_depth,
                tuple(str(r) for r in d.degraded_reasons or ()),
            )
            for d in devices(s)
        ]
        # the known reasons always show, so an empty queue reads 0 rather than no data
        queue = dict.fromkeys((LOW_CONFIDENCE, EDGE_FLAGGED, AUDIT), 0) | queue_counts(s)
    return HubState(rows, queue)


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "waferscope_hub_ingest_messages",
            "MQTT messages received, by topic kind",
            ["kind"],
            registry=r,
        )
        self.stored = Counter(
            "waferscope_hub_ingest_stored",
            "New rows stored from MQTT messages, by kind",
            ["kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "waferscope_hub_ingest_duplicates",
            "Messages whose id was already stored (redeliveries)",
            registry=r,
        )
        self.malformed = Counter(
            "waferscope_hub_ingest_malformed",
            "Messages that could not be used and went to the dead-letter table",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "waferscope_hub_ingest_batch_seconds",
            "Time to prepare and commit one ingest batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_size = Histogram(
            "waferscope_hub_ingest_batch_size",
            "Messages per committed batch",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.db_errors = Counter(
            "waferscope_hub_ingest_db_errors",
            "Batches that failed to commit and were retried",
            registry=r,
        )
        self.connected = Gauge(
            "waferscope_hub_mqtt_connected", "1 while the ingest is connected", registry=r
        )
        self.queue_depth = Gauge(
            "waferscope_hub_ingest_pending",
            "Messages received and not yet committed",
            registry=r,
        )
        self.deliveries = Counter(
            "waferscope_hub_notify_attempts",
            "Alert delivery attempts, by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.hub_alerts = Counter(
            "waferscope_hub_rule_alerts", "Alerts raised by hub rules", ["rule"], registry=r
        )
        self.http_requests = Counter(
            "waferscope_hub_http_requests",
            "HTTP requests, by route and status class",
            ["route", "status"],
            registry=r,
        )
        self.ingest_lag = Histogram(
            "waferscope_hub_ingest_lag_seconds",
            "From the edge classifying a wafer to the hub committing its result",
            buckets=LAG_BUCKETS,
            registry=r,
        )

    def observe_ingest_lag(self, classified: Iterable[datetime], committed: datetime) -> None:
        """One observation per newly stored result (naive UTC times; clock skew counts as 0)."""
        for t in classified:
            self.ingest_lag.observe(max(0.0, (committed - t).total_seconds()))

    def bind_state(self, read: Callable[[], HubState]) -> None:
        """Report devices and the review queue from ``read()`` at every scrape."""
        self.registry.register(_StateCollector(read))

    def bind_database(self, db: Database) -> None:
        self.bind_state(lambda: database_state(db))

    def render(self) -> bytes:
        return generate_latest(self.registry)
