"""The drift page and API: the newest drift run per (device, model), class histograms and the
p-value/PSI history of one pair (``/ui/drift``, ``GET /api/v1/drift``)."""

from __future__ import annotations

from typing import Any

from litestar import Router, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from waferscope.hub import auth
from waferscope.hub.app import Hub  # at runtime: litestar resolves the handlers' annotations
from waferscope.hub.drift.report import history, latest, snapshot_view
from waferscope.hub.web.drift_charts import histogram_svg, history_svg
from waferscope.hub.web.ui import page
from waferscope.hub.web.views import AnyRequest, iso

VIEW = {"permission": auth.VIEW}


def _config_view(hub: Hub) -> dict[str, Any]:
    cfg = hub.config.drift
    return cfg.model_dump(
        mode="json",
        include={
            "enabled",
            "interval_s",
            "reference",
            "reference_size",
            "reference_from",
            "reference_to",
            "current_size",
            "current_window_s",
            "min_results",
            "alpha",
            "correction",
            "permutations",
            "max_samples",
        },
    )


@get("/api/v1/drift", opt=VIEW, sync_to_thread=True)
def drift_api(
    hub: NamedDependency[Hub],
    device: FromQuery[str | None] = None,
    model_version: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """The newest drift run per (device, model version); with ``device`` and ``model_version``
    also that pair's history (oldest first)."""
    with hub.db.session() as s:
        rows = latest(s)
        out: dict[str, Any] = {
            "config": _config_view(hub),
            "computed_at": iso(rows[0].computed_at) if rows else None,
            "pairs": [snapshot_view(r) for r in rows],
        }
        if device is not None and model_version is not None:
            out["history"] = [
                {
                    "computed_at": iso(r.computed_at),
                    "status": r.status,
                    "class_p_adjusted": r.class_p_adjusted,
                    "psi": r.psi,
                    "mmd2": r.mmd2,
                    "mmd_p_adjusted": r.mmd_p_adjusted,
                }
                for r in history(s, device, model_version)
            ]
    return out


@get("/ui/drift", opt=VIEW, sync_to_thread=True)
def drift_page(
    request: AnyRequest,
    hub: NamedDependency[Hub],
    device: FromQuery[str | None] = None,
    model_version: FromQuery[str | None] = None,
) -> Template:
    with hub.db.session() as s:
        rows = latest(s)
        chosen = next(
            (r for r in rows if (r.device_id, r.model_version) == (device, model_version)),
            None,
        ) or next((r for r in rows if r.status == "drift"), rows[0] if rows else None)
        hist_svg = past_svg = ""
        if chosen is not None:
            if chosen.classes:
                hist_svg = histogram_svg(
                    chosen.classes,
                    chosen.reference_counts or [],
                    chosen.current_counts or [],
                    title=f"Predicted classes — {chosen.device_id} / {chosen.model_version}",
                )
            past_svg = history_svg(
                history(s, chosen.device_id, chosen.model_version), alpha=hub.config.drift.alpha
            )
    return page(
        request,
        hub,
        "drift.html.j2",
        rows=rows,
        chosen=chosen,
        hist_svg=hist_svg,
        past_svg=past_svg,
        cfg=hub.config.drift,
    )


ROUTER = Router(
    path="/",
    route_handlers=[drift_api, drift_page],
)
