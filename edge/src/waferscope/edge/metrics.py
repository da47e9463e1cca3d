"""Prometheus metrics of one agent (its own registry, served at ``/metrics`` by the panel)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from waferscope.protocols.pb import common_pb2, result_pb2

STAGES = ("parse", "validate", "encode", "infer", "explain", "store", "publish")
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.wafers = Counter(
            "waferscope_edge_wafers", "Wafers classified", ["pattern", "review"], registry=r
        )
        self.files = Counter(
            "waferscope_edge_files",
            "Files ingested by origin and outcome",
            ["origin", "status"],
            registry=r,
        )
        self.alerts = Counter("waferscope_edge_alerts", "Alerts raised", ["rule"], registry=r)
        self.published = Counter(
            "waferscope_edge_published", "Messages acknowledged by the broker", ["kind"], registry=r
        )
        self.stage_seconds = Histogram(
            "waferscope_edge_stage_seconds",
            "Time per wafer and stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_to_store_seconds = Histogram(
            "waferscope_edge_ingest_to_store_seconds",
            "From receiving a file to its results being committed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_to_ack_seconds = Histogram(
            "waferscope_edge_store_to_ack_seconds",
            "From a result being committed to the broker's acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.confidence = Histogram(
            "waferscope_edge_confidence",
            "Confidence of the predicted pattern",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "waferscope_edge_queue_files", "Files waiting for classification", registry=r
        )
        self.outbox_depth = Gauge(
            "waferscope_edge_outbox_depth", "Messages stored and not yet acknowledged", registry=r
        )
        self.store_bytes = Gauge(
            "waferscope_edge_store_bytes", "Bytes used in the edge database", registry=r
        )
        self.hub_connected = Gauge(
            "waferscope_edge_hub_connected", "1 while the MQTT link is up", registry=r
        )
        self.model = Info("waferscope_edge_model", "The active engine bundle", registry=r)
        self.model_loaded = Gauge(
            "waferscope_edge_model_loaded_timestamp",
            "When the active model was loaded",
            registry=r,
        )

    def bind(
        self,
        outbox_depth: Callable[[], float],
        store_bytes: Callable[[], float],
        hub_connected: Callable[[], float],
    ) -> None:
        """Gauges read at scrape time."""
        self.outbox_depth.set_function(outbox_depth)
        self.store_bytes.set_function(store_bytes)
        self.hub_connected.set_function(hub_connected)

    def set_model(self, version: str, provider: str, encoding: int, loaded_at: float) -> None:
        self.model.info({"version": version, "provider": provider, "encoding": str(encoding)})
        self.model_loaded.set(loaded_at)

    def observe_wafer(
        self,
        result: result_pb2.WaferResult,
        t: common_pb2.StageTimings,
        store_ms: float,
        ingest_to_store_ms: float,
    ) -> None:
        self.wafers.labels(
            pattern=result.pattern.name, review=str(result.review_required).lower()
        ).inc()
        self.confidence.observe(result.confidence)
        for stage, ms in (
            ("parse", t.parse_ms),
            ("validate", t.validate_ms),
            ("encode", t.encode_ms),
            ("infer", t.infer_ms),
            ("explain", t.explain_ms),
            ("store", store_ms),
        ):
            self.stage_seconds.labels(stage=stage).observe(ms / 1000.0)
        self.ingest_to_store_seconds.observe(ingest_to_store_ms / 1000.0)
