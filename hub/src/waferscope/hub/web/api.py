"""The REST API (``/api/v1``): JSON for scripts, MES tools and the UI's own fetches.

Authentication: ``POST /api/v1/auth/token`` with a user's name and password returns a JWT to send
as ``Authorization: Bearer <token>``. Every route names the permission it needs (see ``auth.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Response, Router, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
)
from litestar.params import FromPath, FromQuery, JSONBody, MultipartBody

from waferscope.hub import auth
from waferscope.hub.export import export_labels
from waferscope.hub.store import alerts as alert_store
from waferscope.hub.store import queries, review, users
from waferscope.hub.store.audit import audit
from waferscope.hub.upload import UploadError, parse_upload, store_upload
from waferscope.hub.web.security import require
from waferscope.hub.web.views import (
    AnyRequest,
    HubDependency,
    Offset,
    alert_json,
    client_addr,
    cursor,
    delivery_json,
    detail_json,
    device_json,
    load_detail,
    result_filter,
    result_summary,
)
from waferscope.protocols.errors import WaferscopeError

if TYPE_CHECKING:
    pass

V1 = "/api/v1"


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


class UnprocessableError(HTTPException):
    status_code = 422


# --------------------------------------------------------------------------- auth
@dataclass
class TokenRequest:
    username: str
    password: str


@post(f"{V1}/auth/token", opt={"public": True}, sync_to_thread=True, status_code=200)
def issue_token(
    request: AnyRequest, hub: HubDependency, data: JSONBody[TokenRequest]
) -> dict[str, Any]:
    """Exchange a user name and password for a bearer token."""
    with hub.db.session(write=True) as s:
        user = users.authenticate(s, data.username, data.password, remote_addr=client_addr(request))
        role = user.role if user else None
    if role is None:
        raise NotAuthorizedException("wrong user name or password")
    return {
        "access_token": hub.tokens.issue(data.username, role),
        "token_type": "bearer",
        "expires_in": hub.tokens.ttl_s,
        "role": role,
    }


@get(f"{V1}/me", opt=_perm(auth.VIEW))
async def me(request: AnyRequest) -> dict[str, Any]:
    """Who the token belongs to, and what the role may do."""
    who = require(request)
    return {
        "username": who.username,
        "role": who.role,
        "permissions": sorted(auth.ROLE_PERMISSIONS[who.role]),
    }


# --------------------------------------------------------------------------- results
@get(f"{V1}/results", opt=_perm(auth.VIEW), sync_to_thread=True)
def list_results(
    hub: HubDependency,
    tester: FromQuery[str | None] = None,
    lot: FromQuery[str | None] = None,
    pattern: FromQuery[str | None] = None,
    model_version: FromQuery[str | None] = None,
    device: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
) -> dict[str, Any]:
    """Results, newest first, filtered; page on with ``before`` = the ``next`` of a page."""
    flt = result_filter(
        {
            "tester": tester,
            "lot": lot,
            "pattern": pattern,
            "model_version": model_version,
            "device": device,
            "date_from": date_from,
            "date_to": date_to,
        }
    )
    with hub.db.session() as s:
        page = queries.list_results(s, flt, limit=max(1, min(limit, 500)), before=cursor(before))
    return {
        "results": [result_summary(r, page.labels.get(r.wafer_ref)) for r in page.rows],
        "next": page.next.token() if page.next else None,
    }


@get(f"{V1}/results/{{result_id:str}}", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_result(hub: HubDependency, result_id: FromPath[str]) -> dict[str, Any]:
    """One result with its wafer, heatmap, quality findings, queue state, label and reviews."""
    return detail_json(load_detail(hub, result_id))


@get(f"{V1}/results/{{result_id:str}}/similar", opt=_perm(auth.VIEW), sync_to_thread=True)
def similar(hub: HubDependency, result_id: FromPath[str], k: FromQuery[int] = 8) -> dict[str, Any]:
    """The nearest past wafers by embedding distance (same model version)."""
    found = hub.similar.query(result_id, k=max(1, min(k, 50)))
    return {"neighbours": [{"result_id": n.result_id, "distance": n.distance} for n in found]}


@post(
    f"{V1}/results/{{result_id:str}}/shap",
    opt=_perm(auth.EXPLAIN),
    sync_to_thread=True,
    status_code=200,
)
def shap_values(
    hub: HubDependency,
    result_id: FromPath[str],
    target: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """SHAP attribution of the pattern over wafer regions, on the hub's engine."""
    explainer = hub.explainer
    if explainer is None:
        raise ClientException("no engine bundle is configured on the hub (engine.bundle)")
    from waferscope.hub.web.ui_support import load_map

    compact = load_map(hub, result_id)
    attribution = explainer.explain(compact, target=target)
    return {
        "target": attribution.target,
        "model_version": attribution.model_version,
        "grid": attribution.grid,
        "values": attribution.values.round(6).tolist(),
        "base_value": attribution.base_value,
        "probability": attribution.probability,
        "samples": attribution.samples,
        "top_regions": [{"row": r, "col": c, "value": v} for r, c, v in attribution.top_regions()],
    }


# --------------------------------------------------------------------------- review
@get(f"{V1}/queue", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_queue(hub: HubDependency, limit: FromQuery[int] = 50, offset: Offset = 0) -> dict[str, Any]:
    """Open review items, most urgent first."""
    with hub.db.session() as s:
        rows = queries.list_queue(s, limit=max(1, min(limit, 500)), offset=max(offset, 0))
        counts = queries.queue_counts(s)
    return {
        "counts": counts,
        "items": [
            {
                **result_summary(q.result),
                "priority": round(q.item.priority, 4),
                "reason": q.item.reason,
            }
            for q in rows
        ],
    }


@dataclass
class ReviewRequest:
    pattern: str
    root_cause: str = ""
    comment: str = ""


@post(f"{V1}/results/{{result_id:str}}/review", opt=_perm(auth.REVIEW), sync_to_thread=True)
def post_review(
    request: AnyRequest, hub: HubDependency, result_id: FromPath[str], data: JSONBody[ReviewRequest]
) -> dict[str, Any]:
    """Confirm or correct the pattern and root cause; the label becomes ground truth."""
    who = require(request)
    try:
        step = review.review_and_advance(
            hub.db,
            result_id,
            reviewer=who.username,
            pattern=data.pattern,
            root_cause=data.root_cause,
            comment=data.comment,
            remote_addr=client_addr(request),
            training=hub.config.training,
        )
    except review.ReviewError as exc:
        raise ClientException(str(exc)) from None
    out = step.outcome
    return {
        "review_id": out.review_id,
        "action": out.action,
        "changed": out.changed,
        "next": step.next_id,
    }


@post(
    f"{V1}/results/{{result_id:str}}/skip",
    opt=_perm(auth.REVIEW),
    sync_to_thread=True,
    status_code=200,
)
def post_skip(request: AnyRequest, hub: HubDependency, result_id: FromPath[str]) -> dict[str, Any]:
    """Take a result out of the open queue without labelling it."""
    who = require(request)
    with hub.db.session(write=True) as s:
        done = review.skip(s, result_id, reviewer=who.username)
    return {"skipped": done}


# --------------------------------------------------------------------------- alerts
@get(f"{V1}/alerts", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_alerts(
    hub: HubDependency,
    acknowledged: FromQuery[bool | None] = None,
    severity: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Alerts from edges and hub rules, newest first."""
    with hub.db.session() as s:
        rows = alert_store.list_alerts(
            s,
            acknowledged=acknowledged,
            severity=severity,
            limit=max(1, min(limit, 1000)),
            offset=max(offset, 0),
        )
    return {"alerts": [alert_json(a) for a in rows]}


@post(
    f"{V1}/alerts/{{alert_id:str}}/ack",
    opt=_perm(auth.ACK_ALERTS),
    sync_to_thread=True,
    status_code=200,
)
def ack_alert(request: AnyRequest, hub: HubDependency, alert_id: FromPath[str]) -> dict[str, Any]:
    """Acknowledge an alert."""
    who = require(request)
    with hub.db.session(write=True) as s:
        done = alert_store.acknowledge(
            s, alert_id, user=who.username, remote_addr=client_addr(request)
        )
    return {"acknowledged": done}


@get(f"{V1}/alerts/{{alert_id:str}}/deliveries", opt=_perm(auth.VIEW), sync_to_thread=True)
def alert_deliveries(hub: HubDependency, alert_id: FromPath[str]) -> dict[str, Any]:
    """Where an alert was sent, and how that went."""
    with hub.db.session() as s:
        rows = alert_store.deliveries_of(s, alert_id)
    return {"deliveries": [delivery_json(d) for d in rows]}


@get(f"{V1}/devices", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_devices(hub: HubDependency) -> dict[str, Any]:
    """Every edge: online/offline, last seen, model version, outbox depth."""
    with hub.db.session() as s:
        return {"devices": [device_json(d) for d in queries.devices(s)]}


# --------------------------------------------------------------------------- upload / export
@dataclass
class UploadForm:
    """The upload's multipart body: the file in field ``data`` (a form without it is a 400)."""

    data: UploadFile


@post(f"{V1}/uploads", opt=_perm(auth.UPLOAD), sync_to_thread=True)
def upload(
    request: AnyRequest,
    hub: HubDependency,
    data: MultipartBody[UploadForm],
) -> dict[str, Any]:
    """Upload a tester file (any format protocols reads); its wafers enter the review queue."""
    who = require(request)
    content = data.data.file.read()
    name = data.data.filename or "upload"
    try:
        parsed = parse_upload(content, name, hub.classifier)
    except (UploadError, WaferscopeError) as exc:
        raise UnprocessableError(detail=str(exc)) from None
    ids = store_upload(
        hub.db,
        hub.blobs,
        hub.selector,
        parsed,
        content,
        name=name,
        actor=who.username,
        remote_addr=client_addr(request),
    )
    return {"result_ids": ids, "wafers": len(ids), "sha256": parsed.digest}


@get(f"{V1}/labels/export", opt=_perm(auth.EXPORT), sync_to_thread=True)
def export(request: AnyRequest, hub: HubDependency) -> Response[bytes]:
    """Every labelled wafer as a WM-811K-layout .npz (see docs/hub.md)."""
    import io

    who = require(request)
    buffer = io.BytesIO()
    summary = export_labels(hub.db, hub.blobs, buffer)
    with hub.db.session(write=True) as s:
        audit(
            s,
            who.username,
            "export.labels",
            "api",
            {"wafers": summary.wafers, "classes": summary.class_counts},
            remote_addr=client_addr(request),
        )
    return Response(
        buffer.getvalue(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="waferscope-labels.npz"'},
    )


ROUTERS = [
    Router(path="/", route_handlers=[issue_token, me]),
    Router(path="/", route_handlers=[list_results, get_result, similar, shap_values]),
    Router(path="/", route_handlers=[get_queue, post_review, post_skip]),
    Router(path="/", route_handlers=[get_alerts, ack_alert, alert_deliveries]),
    Router(path="/", route_handlers=[get_devices]),
    Router(path="/", route_handlers=[upload]),
    Router(path="/", route_handlers=[export]),
]
