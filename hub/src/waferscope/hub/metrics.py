"""Prometheus metrics of one hub process (served at /metrics).

Each :class:`HubMetrics` has its own registry, so several hubs in one process (tests) do not
collide. Worker processes started by ``hub run`` expose nothing over HTTP; their figures show in
the database (results, dead letters) and in their logs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
