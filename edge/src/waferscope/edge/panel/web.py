"""Routes of the operator panel: pages, JSON API, pictures, metrics and health checks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, URLEncodedBody
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from waferscope.edge.device_info import agent_version, disk_usage
from waferscope.edge.labels import label_of
from waferscope.edge.panel.access import ReloadGuard, ReloadRefusedError
from waferscope.edge.panel.images import PictureCache
from waferscope.edge.panel.label_routes import label_router
from waferscope.edge.panel.login import (
    OPEN,
    ROUTES,
    WRITES,
    form_csrf_ok,
    not_authorized,
    operator_of,
    panel_guard,
    viewer,
)
from waferscope.edge.panel.operator_auth import OperatorAuth
from waferscope.protocols import messages
from waferscope.protocols.inference import result_map_png, result_overlay_png
from waferscope.protocols.pb import common_pb2, result_pb2

if TYPE_CHECKING:
    from waferscope.edge.wiring import Wiring

HERE = Path(__file__).parent
log = logging.getLogger("waferscope.edge.panel")
SEVERITY_NAMES = {v: k.removeprefix("SEVERITY_").lower() for k, v in common_pb2.Severity.items()}


def _when(epoch: float | None) -> str:
    if not epoch:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _w(state: State) -> Wiring:
    wiring: Wiring = state.wiring
    return wiring


# --------------------------------------------------------------------------- views
def status_view(w: Wiring) -> dict[str, Any]:
    link = w.link_state
    model = w.slot.current
    disk = disk_usage(w.config)
    store = w.store
    return {
        "device_id": w.config.device_id,
        "site": w.config.site,
        "agent_version": agent_version(),
        "hub_link": {
            "enabled": w.link is not None,
            "connected": link.connected,
            "since": link.connected_since.isoformat() if link.connected_since else None,
            "reconnects": link.reconnects,
            "round_trip_ms": round(link.round_trip_ms, 2),
            "broker": f"{w.config.mqtt.host}:{w.config.mqtt.port}",
        },
        "outbox": {"depth": store.outbox_depth(), "oldest": _when(store.outbox_oldest())},
        "model": {
            "version": model.version,
            "provider": model.runner.provider,
            "encoding": model.bundle.encoding.version,
            "loaded": _when(model.loaded_at),
            "last_error": w.slot.last_error,
        },
        "store": {
            "used_bytes": store.used_bytes(),
            "max_bytes": store.max_bytes,
            "full": store.full,
            "used_fraction": round(store.used_bytes() / store.max_bytes, 4),
        },
        "disk": {"free_bytes": disk.free, "total_bytes": disk.total},
        "queue": w.worker.queue.qsize(),
        "degraded": w.device.degraded_reasons(),
        "counts": store.counts(),
    }


def wafer_rows(w: Wiring, limit: int) -> list[dict[str, Any]]:
    rows = w.store.recent_results(limit=limit)
    for r in rows:
        r["received"] = _when(r["received_at"])
        r["confidence_pct"] = f"{r['confidence']:.0%}"
        r["review"] = bool(r["review"])
        r["published"] = bool(r["published"])
    return rows


def alert_rows(w: Wiring, *, active_only: bool, limit: int = 100) -> list[dict[str, Any]]:
    rows = w.store.alerts(active_only=active_only, limit=limit)
    for r in rows:
        r["severity"] = SEVERITY_NAMES.get(r["severity"], "unspecified")
        r["raised"] = _when(r["raised_at"])
        r["acknowledged"] = bool(r["acknowledged"])
        r["published"] = bool(r["published"])
    return rows


def _result(w: Wiring, result_id: str) -> tuple[dict[str, Any], result_pb2.WaferResult]:
    found = w.store.result(result_id)
    if found is None:
        raise NotFoundException(f"no stored result {result_id}")
    return found


def wafer_view(meta: dict[str, Any], r: result_pb2.WaferResult) -> dict[str, Any]:
    dist = sorted(r.pattern.distribution, key=lambda c: -c.probability)
    return {
        "meta": meta,
        "id": r.result_id,
        "sequence": r.sequence,
        "wafer": r.wafer,
        "received": _when(meta["received_at"]),
        "pattern": r.pattern.name,
        "confidence": r.confidence,
        "distribution": [(c.name, c.probability) for c in dist],
        "cause": r.root_cause.name,
        "cause_probability": r.root_cause.probability,
        "review": r.review_required,
        "review_reason": result_pb2.ReviewReason.Name(r.review_reason)
        .removeprefix("REVIEW_REASON_")
        .lower(),
        "review_detail": r.review_detail,
        "regions": list(r.hot_regions),
        "findings": [
            (f.code, SEVERITY_NAMES.get(f.severity, ""), f.message) for f in r.quality_findings
        ],
        "quality_score": r.quality_score,
        "timings": messages.to_json_dict(r.timings),
        "die_count": r.die_count,
        "fail_count": r.fail_count,
        "yield": r.yield_fraction,
        "model_version": r.model_version,
        "provider": r.runtime_provider,
        "published": bool(meta["published"]),
    }


# --------------------------------------------------------------------------- pages
AnyRequest = Request[Any, Any, Any]


@get("/", sync_to_thread=True)
def index(request: AnyRequest, state: State) -> Template:
    w = _w(state)
    return Template(
        template_name="index.html.j2",
        context={
            "viewer": viewer(request),
            "status": status_view(w),
            "wafers": wafer_rows(w, w.config.panel.recent),
            "alerts": alert_rows(w, active_only=True, limit=20),
            "refresh": w.config.panel.refresh_s,
        },
    )


@get("/wafers/{result_id:str}", sync_to_thread=True)
def wafer_page(request: AnyRequest, state: State, result_id: FromPath[str]) -> Template:
    w = _w(state)
    meta, result = _result(w, result_id)
    return Template(
        template_name="wafer.html.j2",
        context={
            "viewer": viewer(request),
            "status": status_view(w),
            "wafer": wafer_view(meta, result),
            "label": label_of(w.store, result_id),
            "classes": list(w.slot.current.bundle.pattern_classes),
            "refresh": w.config.panel.refresh_s * 6,
        },
    )


@get("/alerts", sync_to_thread=True)
def alerts_page(request: AnyRequest, state: State) -> Template:
    w = _w(state)
    return Template(
        template_name="alerts.html.j2",
        context={
            "viewer": viewer(request),
            "status": status_view(w),
            "alerts": alert_rows(w, active_only=False, limit=500),
            "refresh": w.config.panel.refresh_s,
        },
    )


@dataclass
class AckForm:
    by: str = "operator"
    back: str = "/"
    csrf: str = ""


@post("/alerts/{alert_id:str}/ack", sync_to_thread=True, opt=WRITES)
def ack_form(
    request: AnyRequest,
    state: State,
    alert_id: FromPath[str],
    data: URLEncodedBody[AckForm],
) -> Redirect:
    if not form_csrf_ok(request, data.csrf):
        raise PermissionDeniedException("the form's CSRF token does not match the session")
    name, via = operator_of(request)
    by = name if via == "cookie" and name else data.by.strip()[:64] or "operator"
    _w(state).store.acknowledge(alert_id, by)
    back = data.back if data.back.startswith("/") and not data.back.startswith("//") else "/"
    return Redirect(path=back, status_code=303)


# --------------------------------------------------------------------------- pictures
@get("/wafers/{result_id:str}/map.png", sync_to_thread=True, media_type="image/png")
def map_picture(state: State, result_id: FromPath[str]) -> Response[bytes]:
    w = _w(state)
    pictures: PictureCache = state.pictures
    _, result = _result(w, result_id)
    data = pictures.get((result_id, "map"), lambda: result_map_png(result))
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@get("/wafers/{result_id:str}/overlay.png", sync_to_thread=True, media_type="image/png")
def overlay_picture(state: State, result_id: FromPath[str]) -> Response[bytes]:
    w = _w(state)
    pictures: PictureCache = state.pictures
    _, result = _result(w, result_id)
    data = pictures.get((result_id, "overlay"), lambda: result_overlay_png(result))
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


# --------------------------------------------------------------------------- JSON API
@get("/api/status", sync_to_thread=True)
def api_status(state: State) -> dict[str, Any]:
    return status_view(_w(state))


@get("/api/wafers", sync_to_thread=True)
def api_wafers(state: State, limit: FromQuery[int] = 50) -> list[dict[str, Any]]:
    return wafer_rows(_w(state), max(1, min(limit, 1000)))


@get("/api/wafers/{result_id:str}", sync_to_thread=True)
def api_wafer(state: State, result_id: FromPath[str]) -> dict[str, Any]:
    meta, result = _result(_w(state), result_id)
    return {"stored": dict(meta), "result": messages.to_json_dict(result)}


@get("/api/alerts", sync_to_thread=True)
def api_alerts(
    state: State, active: FromQuery[bool] = False, limit: FromQuery[int] = 100
) -> list[dict[str, Any]]:
    return alert_rows(_w(state), active_only=active, limit=max(1, min(limit, 1000)))


@dataclass
class AckRequest:
    by: str = "api"


@post("/api/alerts/{alert_id:str}/ack", sync_to_thread=True, status_code=200, opt=WRITES)
def api_ack(
    request: AnyRequest,
    state: State,
    alert_id: FromPath[str],
    data: JSONBody[AckRequest | None] = None,
) -> dict[str, Any]:
    name, via = operator_of(request)
    by = name if via == "cookie" and name else (data.by if data else "api").strip()[:64] or "api"
    changed = _w(state).store.acknowledge(alert_id, by)
    return {"alert_id": alert_id, "acknowledged": True, "changed": changed}


@dataclass
class ReloadRequest:
    path: str | None = None


@post("/api/model/reload", sync_to_thread=True, status_code=200, opt=OPEN)
def api_reload(
    request: Request[Any, Any, Any], state: State, data: JSONBody[ReloadRequest | None] = None
) -> Response[dict[str, Any]]:
    """Swap the engine: only bundle folders under an allowed folder, with the token when one is
    configured, never from the network without one (see ``access.py``)."""
    w = _w(state)
    guard: ReloadGuard = state.reload_guard
    try:
        path = guard.check(
            request.headers.get("authorization"),
            data.path if data else None,
            w.slot.current.bundle.folder,
        )
    except ReloadRefusedError as exc:
        log.warning("model reload refused (HTTP %d): %s", exc.status_code, exc.reason)
        return Response(
            {"swapped": False, "error": exc.reason, "model": w.slot.current.version},
            status_code=exc.status_code,
            headers={"WWW-Authenticate": 'Bearer realm="waferscope-edge"'}
            if exc.status_code == 401
            else None,
        )
    try:
        model = w.slot.swap(path)
    except Exception as exc:  # refused: the old model stays
        return Response(
            {"swapped": False, "error": str(exc), "model": w.slot.current.version}, status_code=409
        )
    return Response({"swapped": True, "model": model.version, "provider": model.runner.provider})


# --------------------------------------------------------------------------- operations
@get("/metrics", sync_to_thread=True, opt=OPEN)
def metrics(state: State) -> Response[bytes]:
    return Response(generate_latest(_w(state).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@get("/healthz", sync_to_thread=False, media_type=MediaType.TEXT, opt=OPEN)
def healthz() -> str:
    return "ok"


@get("/readyz", sync_to_thread=True, opt=OPEN)
def readyz(state: State) -> Response[dict[str, Any]]:
    w = _w(state)
    reasons = []
    if not w.agent.started or w.agent.stopping.is_set():
        reasons.append("not_running")
    if w.store.full:
        reasons.append("store_full")
    ready = not reasons
    return Response(
        {"ready": ready, "reasons": reasons, "time": time.time()}, status_code=200 if ready else 503
    )


def create_app(wiring: Wiring) -> Litestar:
    return Litestar(
        route_handlers=[
            index,
            wafer_page,
            alerts_page,
            ack_form,
            map_picture,
            overlay_picture,
            api_status,
            api_wafers,
            api_wafer,
            api_alerts,
            api_ack,
            api_reload,
            metrics,
            healthz,
            readyz,
            *ROUTES,
            label_router,
            create_static_files_router(path="/static", directories=[HERE / "static"], opt=OPEN),
        ],
        guards=[panel_guard],
        exception_handlers={NotAuthorizedException: not_authorized},
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine),
        state=State(
            {
                "wiring": wiring,
                "pictures": PictureCache(),
                "reload_guard": ReloadGuard.from_config(wiring.config),
                "operator_auth": OperatorAuth.from_config(wiring.config.panel),
            }
        ),
        openapi_config=None,
        debug=False,
    )
