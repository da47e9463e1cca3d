"""Reading drift snapshots back: the latest per (device, model), a pair's history, their JSON
view, and the Prometheus collector that reports them at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waferscope.hub.db.schema import DriftSnapshot

log = logging.getLogger("waferscope.hub.drift")


def latest(session: Session) -> list[DriftSnapshot]:
    """The snapshots of the newest drift run (one per device and model version)."""
    newest = session.scalar(select(func.max(DriftSnapshot.computed_at)))
    if newest is None:
        return []
    stmt = (
        select(DriftSnapshot)
        .where(DriftSnapshot.computed_at == newest)
        .order_by(DriftSnapshot.device_id, DriftSnapshot.model_version)
    )
    return list(session.scalars(stmt))


def history(session: Session, device: str, model: str, *, limit: int = 200) -> list[DriftSnapshot]:
    """The pair's snapshots, oldest first (the newest ``limit``)."""
    stmt = (
        select(DriftSnapshot)
        .where(DriftSnapshot.device_id == device, DriftSnapshot.model_version == model)
        .order_by(DriftSnapshot.computed_at.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def snapshot_view(row: DriftSnapshot) -> dict[str, Any]:
    """A snapshot as the API returns it."""
    hist = None
    if row.classes is not None:
        hist = {
            "classes": row.classes,
            "reference": row.reference_counts,
            "current": row.current_counts,
        }
    return {
        "device_id": row.device_id,
        "model_version": row.model_version,
        "computed_at": _iso(row.computed_at),
        "status": row.status,
        "reference": {
            "n": row.reference_n,
            "start": _iso(row.reference_start),
            "end": _iso(row.reference_end),
        },
        "current": {
            "n": row.current_n,
            "start": _iso(row.current_start),
            "end": _iso(row.current_end),
        },
        "classes": {
            "chi2": row.chi2,
            "p_value": row.class_p,
            "p_adjusted": row.class_p_adjusted,
            "js_distance": row.js_distance,
            "psi": row.psi,
            "histogram": hist,
        },
        "embedding": {
            "n": row.embedding_n,
            "mmd2": row.mmd2,
            "p_value": row.mmd_p,
            "p_adjusted": row.mmd_p_adjusted,
        },
        "correction": row.correction,
    }


class DriftCollector(Collector):
    """The newest drift run's figures, read from the database at scrape time (so every process
    serving /metrics reports them, whichever ran the job). A failing read yields no samples."""

    def __init__(self, read: Callable[[], list[DriftSnapshot]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self._read()
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("cannot read drift snapshots for /metrics: %s", exc)
            return
        labels = ["device", "model_version"]
        p_value = GaugeMetricFamily(
            "waferscope_hub_drift_p_value",
            "Corrected p-value of the newest drift test, by kind (classes: chi-square on the "
            "predicted-class histogram; embedding: MMD permutation test)",
            labels=[*labels, "kind"],
        )
        psi = GaugeMetricFamily(
            "waferscope_hub_drift_psi",
            "Population stability index of the predicted-class histogram, current vs reference",
            labels=labels,
        )
        mmd = GaugeMetricFamily(
            "waferscope_hub_drift_mmd2",
            "MMD² (RBF kernel) between current and reference embeddings",
            labels=labels,
        )
        drifting = GaugeMetricFamily(
            "waferscope_hub_drift_detected",
            "1 while the newest drift run finds drift for the device and model (0: none or too "
            "few results)",
            labels=labels,
        )
        stamp = GaugeMetricFamily(
            "waferscope_hub_drift_last_run_timestamp_seconds",
            "When the newest drift run was computed (Unix time)",
        )
        for r in rows:
            key = [r.device_id, r.model_version]
            if r.class_p_adjusted is not None:
                p_value.add_metric([*key, "classes"], r.class_p_adjusted)
            if r.mmd_p_adjusted is not None:
                p_value.add_metric([*key, "embedding"], r.mmd_p_adjusted)
            if r.psi is not None:
                psi.add_metric(key, r.psi)
            if r.mmd2 is not None:
                mmd.add_metric(key, r.mmd2)
            drifting.add_metric(key, 1.0 if r.status == "drift" else 0.0)
        if rows:
            stamp.add_metric([], rows[0].computed_at.replace(tzinfo=UTC).timestamp())
        yield from (p_value, psi, mmd, drifting, stamp)
