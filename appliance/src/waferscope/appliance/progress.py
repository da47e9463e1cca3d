"""How far the wafers have got, read from each part's Prometheus /metrics (the parts' public
monitoring interface: nothing here reads their databases)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def scrape(url: str, timeout: float = 2.0) -> list[Sample]:
    """Every sample of a /metrics page as (name, labels, value); empty when the part is down."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return []
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of one sample name's values whose labels include ``labels``."""
    return sum(
        v
        for n, lab, v in samples
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    )


@dataclass(frozen=True)
class EdgeProgress:
    device_id: str
    up: bool
    classified: int
    flagged: int
    rejected_files: int
    outbox: int
    hub_connected: bool


@dataclass(frozen=True)
class Progress:
    edges: list[EdgeProgress]
    hub_up: bool
    hub_results: int
    hub_alerts: int
    hub_duplicates: int

    @property
    def classified(self) -> int:
        return sum(e.classified for e in self.edges)

    @property
    def outbox(self) -> int:
        return sum(e.outbox for e in self.edges)

    def line(self, sent: int | None = None) -> str:
        parts = [] if sent is None else [f"sent {sent}"]
        flagged = sum(e.flagged for e in self.edges)
        rejected = sum(e.rejected_files for e in self.edges)
        parts.append(f"classified {self.classified} (for review {flagged})")
        if rejected:
            parts.append(f"refused files {rejected}")
        parts.append(f"waiting at edges {self.outbox}")
        hub = f"hub stored {self.hub_results}, alerts {self.hub_alerts}"
        parts.append(hub if self.hub_up else "hub DOWN")
        down = [e.device_id for e in self.edges if not e.up]
        offline = [e.device_id for e in self.edges if e.up and not e.hub_connected]
        if down:
            parts.append("DOWN: " + ", ".join(down))
        if offline:
            parts.append("no broker link: " + ", ".join(offline))
        return " · ".join(parts)


def read_progress(hub_url: str, edges: list[tuple[str, str]]) -> Progress:
    """``edges``: (device id, panel URL) pairs."""
    rows: list[EdgeProgress] = []
    for device_id, url in edges:
        m = scrape(url + "/metrics")
        rows.append(
            EdgeProgress(
                device_id=device_id,
                up=bool(m),
                classified=int(total(m, "waferscope_edge_wafers_total")),
                flagged=int(total(m, "waferscope_edge_wafers_total", review="true")),
                rejected_files=int(total(m, "waferscope_edge_files_total", status="rejected")),
                outbox=int(total(m, "waferscope_edge_outbox_depth")),
                hub_connected=total(m, "waferscope_edge_hub_connected") >= 1,
            )
        )
    hub = scrape(hub_url + "/metrics")
    return Progress(
        edges=rows,
        hub_up=bool(hub),
        hub_results=int(total(hub, "waferscope_hub_ingest_stored_total", kind="result")),
        hub_alerts=int(total(hub, "waferscope_hub_ingest_stored_total", kind="alert")),
        hub_duplicates=int(total(hub, "waferscope_hub_ingest_duplicates_total")),
    )
