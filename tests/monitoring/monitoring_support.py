"""Helpers of the monitoring tests (imported by name; the fixtures are in conftest.py): where
the monitoring assets are, the rules and scrape jobs they define, the metric names an exposition
holds, and messages to feed a hub."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus" / "waferscope-rules.yml"
PROMETHEUS_YML = MONITORING / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((MONITORING / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = MONITORING / "grafana" / "waferscope.json"
OBSERVABILITY_DOC = REPO / "docs" / "observability.md"

JWT_SECRET = "monitoring-test-secret-" + "x" * 40


def load_rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, each with its group name under 'group'."""
    doc = yaml.safe_load(RULES.read_text())
    return [{**rule, "group": g["name"]} for g in doc["groups"] for rule in g["rules"]]


def target_labels() -> dict[str, set[str]]:
    """Labels Prometheus attaches per scrape job (job, instance and the static labels)."""
    doc = yaml.safe_load(PROMETHEUS_YML.read_text())
    out: dict[str, set[str]] = {}
    for job in doc["scrape_configs"]:
        labels = {"job", "instance"}
        for static in job.get("static_configs", []):
            labels |= set(static.get("labels", {}))
        out[job["job_name"]] = labels
    return out


# --------------------------------------------------------------------------- exported metrics
@dataclass
class Exported:
    """Sample names (with _total/_bucket/_sum/_count/_created/_info expanded) and their labels."""

    labels: dict[str, set[str]]
    types: dict[str, str]  # sample name -> family type

    def merge(self, other: Exported) -> None:
        for name, labels in other.labels.items():
            self.labels.setdefault(name, set()).update(labels)
        self.types.update(other.types)


def parse_exposition(text: str) -> Exported:
    from prometheus_client.parser import text_string_to_metric_families

    out = Exported({}, {})
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
            "info": ("_info",),
        }.get(family.type, ("",))
        for suffix in suffixes:
            out.labels.setdefault(family.name + suffix, set())
            out.types[family.name + suffix] = family.type
        for sample in family.samples:
            out.labels.setdefault(sample.name, set()).update(sample.labels)
            out.types.setdefault(sample.name, family.type)
    return out


def with_children(metrics: object) -> None:
    """One child per labelled metric, so that the exposition shows every family's labels."""
    from prometheus_client.metrics import MetricWrapperBase

    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names = getattr(value, "_labelnames", ())  # no public accessor
            if names:
                value.labels(*["x"] * len(names))


@dataclass
class RunningHub:
    hub: Any
    client: Any

    def scrape(self) -> str:
        res = self.client.get("/metrics")
        assert res.status_code == 200, res.text
        return str(res.text)


def feed(hub: Any, *messages_: Any, site: str = "fab3") -> None:
    """Push messages through the hub's decode-and-commit path (as the MQTT ingest does)."""
    from waferscope.hub.ingest.handler import Incoming
    from waferscope.protocols import messages, topics
    from waferscope.protocols.topics import TopicKind

    kinds = {
        "WaferResult": TopicKind.RESULT,
        "Alert": TopicKind.ALERT,
        "DeviceStatus": TopicKind.STATUS,
        "DeviceBirth": TopicKind.BIRTH,
    }
    items = [
        Incoming(
            topics.topic_name(kinds[m.DESCRIPTOR.name], m.device_id, site=site),
            messages.encode(m),
        )
        for m in messages_
    ]
    assert hub.writer.handle(items)


def fed_messages(device: str, classified_ago_s: float = 42.0) -> list[Any]:
    """A birth, a DEGRADED status (store full), two results and an alert from ``device``."""
    from waferscope.protocols.pb import alert_pb2, common_pb2, device_pb2, result_pb2

    now = datetime.now(UTC)
    birth = device_pb2.DeviceBirth(
        schema_version=1, device_id=device, connection_id="c-1", agent_version="1.0"
    )
    status = device_pb2.DeviceStatus(
        schema_version=1,
        device_id=device,
        connection_id="c-1",
        state=device_pb2.DEVICE_STATE_DEGRADED,
        cause=device_pb2.STATUS_CAUSE_PERIODIC,
        outbox_depth=17,
        degraded_reasons=["store_full"],
    )
    status.since.FromDatetime(now - timedelta(minutes=5))
    results = []
    for i, confidence in enumerate((0.3, 0.99)):
        r = result_pb2.WaferResult(
            schema_version=1,
            result_id=str(uuid.uuid4()),
            device_id=device,
            sequence=i + 1,
            pattern=result_pb2.Prediction(name="Edge-Ring", probability=confidence),
            confidence=confidence,
            review_required=confidence < 0.5,
            review_reason=(
                result_pb2.REVIEW_REASON_LOW_CONFIDENCE
                if confidence < 0.5
                else result_pb2.REVIEW_REASON_UNSPECIFIED
            ),
        )
        r.wafer.lot_id = "LOT1"
        r.wafer.wafer_id = f"W{i}"
        r.wafer.tester_id = "T-01"
        r.classified_time.FromDatetime(now - timedelta(seconds=classified_ago_s))
        results.append(r)
    alert = alert_pb2.Alert(
        schema_version=1,
        alert_id=str(uuid.uuid4()),
        device_id=device,
        sequence=1,
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="store-full",
        rule_kind="device",
        severity=common_pb2.SEVERITY_CRITICAL,
        title="local store full",
    )
    alert.raised_time.FromDatetime(now)
    return [birth, status, *results, alert]
