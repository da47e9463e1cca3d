"""The reviewers' pages (server-rendered, Jinja): queue, wafer, results, trends, alerts, devices."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from litestar import Response, Router, get
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from waferscope.hub import auth
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Result
from waferscope.hub.store import alerts as alert_store
from waferscope.hub.store import queries
from waferscope.hub.web.charts import trend_svg
from waferscope.hub.web.pictures import PictureCache, map_png, overlay_png, region_png
from waferscope.hub.web.security import current, require
from waferscope.hub.web.ui_support import load_heatmap, load_map, map_key
from waferscope.hub.web.views import (
    AnyRequest,
    HubDependency,
    Offset,
    cursor,
    load_detail,
    result_filter,
    when,
)

if TYPE_CHECKING:
    from waferscope.hub.app import Hub

PICTURES = PictureCache()
PNG_HEADERS = {"Cache-Control": "private, max-age=86400"}


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def page(request: AnyRequest, hub: Hub, template: str, **context: Any) -> Template:
    """A page with what every page shows: the user, the nav counts."""
    who = current(request)
    with hub.db.session() as s:
        open_alerts = alert_store.open_alert_count(s)
    return Template(
        template_name=template,
        context={
            "me": who,
            "can": (lambda p: who is not None and who.can(p)),
            "open_alerts": open_alerts,
            "when": when,
            "path": request.url.path,
            **context,
        },
    )


@get("/", opt={"public": True})
async def home() -> Redirect:
    return Redirect(path="/ui/queue")


@get("/ui/queue", opt=_perm(auth.VIEW), sync_to_thread=True)
def queue_page(request: AnyRequest, hub: HubDependency, page_no: Offset = 0) -> Template:
    size = hub.config.review.page_size
    with hub.db.session() as s:
        rows = queries.list_queue(s, limit=size, offset=max(page_no, 0) * size)
        counts = queries.queue_counts(s)
    return page(
        request,
        hub,
        "queue.html.j2",
        rows=rows,
        counts=counts,
        page_no=max(page_no, 0),
        page_size=size,
    )


def _sorted_distribution(probabilities: dict[str, Any] | None, key: str) -> list[tuple[str, float]]:
    items = (probabilities or {}).get(key) or []
    return sorted(((str(n), float(p)) for n, p in items), key=lambda t: -t[1])


@dataclass(frozen=True)
class ReviewDraft:
    """What a reviewer had entered when a save was refused, shown again with the reason."""

    error: str
    pattern: str = ""
    root_cause: str = ""
    comment: str = ""


@get("/ui/wafers/{result_id:str}", opt=_perm(auth.VIEW), sync_to_thread=True)
def wafer_page(request: AnyRequest, hub: HubDependency, result_id: FromPath[str]) -> Template:
    return wafer_view(request, hub, result_id)


def wafer_view(
    request: AnyRequest, hub: Hub, result_id: str, draft: ReviewDraft | None = None
) -> Template:
    """The wafer page; with a draft, the refused review's entries and why (HTTP 422)."""
    detail = load_detail(hub, result_id)
    with hub.db.session() as s:
        nxt = queries.next_in_queue(s, exclude=result_id)
        recent_causes = queries.recent_values(s, Result.root_cause, sample=2000)
    patterns = list(queries.PATTERN_CLASSES)
    dist = _sorted_distribution(detail.result.probabilities, "pattern")
    patterns += [p for p, _ in dist if p not in patterns]
    causes = [c for c, _ in _sorted_distribution(detail.result.probabilities, "root_cause")]
    causes += [c for c in recent_causes if c not in causes]
    template = page(
        request,
        hub,
        "wafer.html.j2",
        d=detail,
        r=detail.result,
        w=detail.wafer,
        patterns=patterns,
        causes=causes,
        distribution=dist,
        cause_distribution=_sorted_distribution(detail.result.probabilities, "root_cause"),
        next_id=nxt,
        has_engine=hub.config.engine.bundle is not None,
        draft=draft,
    )
    if draft is not None:
        template.status_code = 422
    return template


@get("/ui/wafers/{result_id:str}/map.png", opt=_perm(auth.VIEW), sync_to_thread=True)
def map_picture(hub: HubDependency, result_id: FromPath[str]) -> Response[bytes]:
    key = map_key(hub, result_id)
    data = PICTURES.get("map:" + key, lambda: map_png(load_map(hub, result_id), max_px=440))
    return Response(data, media_type="image/png", headers=PNG_HEADERS)


@get("/ui/wafers/{result_id:str}/overlay.png", opt=_perm(auth.VIEW), sync_to_thread=True)
def overlay_picture(hub: HubDependency, result_id: FromPath[str]) -> Response[bytes]:
    heat_key, heat = load_heatmap(hub, result_id)
    key = map_key(hub, result_id)
    data = PICTURES.get(
        f"overlay:{key}:{heat_key}",
        lambda: overlay_png(load_map(hub, result_id), heat, max_px=360),
    )
    return Response(data, media_type="image/png", headers=PNG_HEADERS)


@get("/ui/wafers/{result_id:str}/similar", opt=_perm(auth.VIEW), sync_to_thread=True)
def similar_fragment(hub: HubDependency, result_id: FromPath[str]) -> Template:
    found = hub.similar.query(result_id, k=8)
    rows = []
    with hub.db.session() as s:
        for n in found:
            r = s.get(Result, n.result_id)
            if r is not None:
                rows.append((r, n.distance))
    return Template(template_name="_similar.html.j2", context={"rows": rows, "when": when})


@get("/ui/wafers/{result_id:str}/shap", opt=_perm(auth.EXPLAIN), sync_to_thread=True)
def shap_fragment(
    request: AnyRequest,
    hub: HubDependency,
    result_id: FromPath[str],
    target: FromQuery[str | None] = None,
) -> Template:
    """Computed on request (seconds): the page fetches it when the reviewer asks."""
    explainer = hub.explainer
    if explainer is None:
        return Template(template_name="_shap.html.j2", context={"error": "no engine configured"})
    compact = load_map(hub, result_id)
    attribution = explainer.explain(compact, target=target)
    picture = base64.b64encode(region_png(compact, attribution.values)).decode("ascii")
    return Template(
        template_name="_shap.html.j2",
        context={"a": attribution, "picture": picture, "error": None},
    )


@get("/ui/results", opt=_perm(auth.VIEW), sync_to_thread=True)
def results_page(
    request: AnyRequest,
    hub: HubDependency,
    tester: FromQuery[str | None] = None,
    lot: FromQuery[str | None] = None,
    pattern: FromQuery[str | None] = None,
    model_version: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
) -> Template:
    params = {
        "tester": tester,
        "lot": lot,
        "pattern": pattern,
        "model_version": model_version,
        "date_from": date_from,
        "date_to": date_to,
    }
    flt = result_filter(params)
    with hub.db.session() as s:
        pg = queries.list_results(s, flt, limit=hub.config.review.page_size, before=cursor(before))
        testers = queries.testers(s)
        models = queries.recent_values(s, Result.model_version)
    patterns = list(queries.PATTERN_CLASSES)
    query = "&".join(f"{k}={v}" for k, v in params.items() if v)
    return page(
        request,
        hub,
        "results.html.j2",
        page=pg,
        params=params,
        testers=testers,
        models=models,
        patterns=patterns,
        query=query,
    )


@get("/ui/trends", opt=_perm(auth.VIEW), sync_to_thread=True)
def trends_page(
    request: AnyRequest,
    hub: HubDependency,
    tester: FromQuery[str | None] = None,
    days: FromQuery[int] = 30,
) -> Template:
    days = max(2, min(days, 180))
    with hub.db.session() as s:
        testers = queries.testers(s)
        chosen = tester if tester in testers else (testers[0] if testers else None)
        charts: list[tuple[str, str, int]] = []
        if chosen:
            labels, series, totals = queries.pattern_trend(
                s, tester=chosen, days=days, now=utcnow()
            )
            for pattern, counts in series.items():
                charts.append(
                    (
                        pattern,
                        trend_svg(labels, counts, totals, title=f"{pattern} — {chosen}"),
                        sum(counts),
                    )
                )
    return page(
        request, hub, "trends.html.j2", testers=testers, tester=chosen, days=days, charts=charts
    )


@get("/ui/alerts", opt=_perm(auth.VIEW), sync_to_thread=True)
def alerts_page(request: AnyRequest, hub: HubDependency, show: FromQuery[str] = "open") -> Template:
    with hub.db.session() as s:
        rows = alert_store.list_alerts(s, acknowledged=False if show == "open" else None, limit=200)
        deliveries = {a.alert_id: alert_store.deliveries_of(s, a.alert_id) for a in rows[:50]}
    return page(request, hub, "alerts.html.j2", rows=rows, show=show, deliveries=deliveries)


@get("/ui/devices", opt=_perm(auth.VIEW), sync_to_thread=True)
def devices_page(request: AnyRequest, hub: HubDependency) -> Template:
    with hub.db.session() as s:
        rows = queries.devices(s)
    stale = utcnow() - timedelta(minutes=5)
    return page(request, hub, "devices.html.j2", rows=rows, stale=stale)


@get("/ui/help", opt=_perm(auth.VIEW))
async def help_page(request: AnyRequest, hub: HubDependency) -> Template:
    require(request)
    return page(request, hub, "help.html.j2")


PAGES = Router(
    path="/",
    route_handlers=[
        home,
        queue_page,
        wafer_page,
        similar_fragment,
        shap_fragment,
        results_page,
        trends_page,
        alerts_page,
        devices_page,
        help_page,
    ],
)
PICTURES_ROUTER = Router(path="/", route_handlers=[map_picture, overlay_picture])
ROUTERS = [PAGES, PICTURES_ROUTER]
