"""The release pages: the registry (list, upload, metrics, start a rollout) and one rollout
(waves, per-device state, gate figures per wave, pause / resume / abort / roll back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Router, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import FromPath, MultipartBody, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from waferscope.hub import auth
from waferscope.hub.app import Hub
from waferscope.hub.db.schema import Device
from waferscope.hub.releases import get_release, list_releases
from waferscope.hub.rollout.store import (
    RolloutNotFoundError,
    devices_of,
    get_rollout,
    list_rollouts,
)
from waferscope.hub.web.api_releases import HubDep, register
from waferscope.hub.web.api_rollouts import ACTIONS, rollout_action, start_rollout
from waferscope.hub.web.ui import page
from waferscope.hub.web.views import AnyRequest


def _registry(request: AnyRequest, hub: Hub, **extra: Any) -> Template:
    with hub.db.session() as s:
        releases = list_releases(s)
        rollouts = list_rollouts(s, limit=50)
        devices = sorted(d.device_id for d in s.query(Device))
    return page(
        request,
        hub,
        "releases.html.j2",
        releases=releases,
        rollouts=rollouts,
        devices=devices,
        **extra,
    )


@get("/releases", opt={"permission": auth.VIEW}, sync_to_thread=True)
def releases_page(request: AnyRequest, hub: HubDep) -> Template:
    return _registry(request, hub)


@post("/releases", opt={"permission": auth.RELEASES}, sync_to_thread=True)
def upload_release(
    request: AnyRequest, hub: HubDep, data: MultipartBody[dict[str, UploadFile]]
) -> Template:
    """The registry page's upload form (the same checks as POST /api/v1/releases)."""
    upload = data.get("release")
    if upload is None:
        return _registry(request, hub, error="Choose a release file.")
    try:
        body, new = register(hub, request, upload.file.read(), upload.filename or "upload")
    except HTTPException as exc:  # refused: the reason on the page
        return _registry(request, hub, error=str(exc.detail))
    note = "registered" if new else "was registered before"
    return _registry(request, hub, done=f"Release {body['version']} ({body['channel']}) {note}.")


def parse_waves(text: str) -> list[dict[str, Any]]:
    """``canary 1, 50%, 100%`` or ``edge-01 edge-02, 100%`` → the API's wave list."""
    waves: list[dict[str, Any]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith("canary"):
            count = part.removeprefix("canary").strip() or "1"
            waves.append({"canary": int(count) if count.isdigit() else count})
        elif part.endswith("%") and part[:-1].replace(".", "", 1).isdigit():
            waves.append({"percent": float(part[:-1])})
        else:
            waves.append({"devices": part.split()})
    return waves


@dataclass
class RolloutForm:
    release_id: str = ""
    devices: str = ""
    waves: str = "canary 1, 50%, 100%"
    max_failure_share: float = 0.0
    min_shadow_agreement: float = 0.9
    max_confidence_shift: float = 0.15
    latency_budget_ms: float = 250.0
    wave_timeout_s: float = 900.0


@post("/rollouts", opt={"permission": auth.RELEASES}, sync_to_thread=True)
def start_rollout_form(
    request: AnyRequest, hub: HubDep, data: URLEncodedBody[RolloutForm]
) -> Redirect | Template:
    doc: dict[str, Any] = {
        "release_id": data.release_id,
        "waves": parse_waves(data.waves),
        "gates": {
            "max_failure_share": data.max_failure_share,
            "min_shadow_agreement": data.min_shadow_agreement,
            "max_confidence_shift": data.max_confidence_shift,
            "latency_budget_ms": data.latency_budget_ms,
            "wave_timeout_s": data.wave_timeout_s,
        },
    }
    if data.devices.strip():
        doc["devices"] = data.devices.replace(",", " ").split()
    try:
        body = start_rollout(hub, request, doc)
    except HTTPException as exc:
        return _registry(request, hub, error=str(exc.detail))
    return Redirect(f"/ui/rollouts/{body['rollout_id']}", status_code=HTTP_303_SEE_OTHER)


@get("/rollouts/{rollout_id:str}", opt={"permission": auth.VIEW}, sync_to_thread=True)
def rollout_page(request: AnyRequest, hub: HubDep, rollout_id: FromPath[str]) -> Template:
    with hub.db.session() as s:
        try:
            row = get_rollout(s, rollout_id)
        except RolloutNotFoundError as exc:
            raise NotFoundException(str(exc)) from None
        release = get_release(s, row.release_id)
        devices = devices_of(s, rollout_id)
    return page(
        request,
        hub,
        "rollout.html.j2",
        rollout=row,
        release=release,
        devices=devices,
        actions=ACTIONS,
    )


@post(
    "/rollouts/{rollout_id:str}/{action:str}",
    opt={"permission": auth.RELEASES},
    sync_to_thread=True,
)
def rollout_action_form(
    hub: HubDep, request: AnyRequest, rollout_id: FromPath[str], action: FromPath[str]
) -> Redirect:
    if action not in ACTIONS:
        raise ClientException(f"no rollout action {action!r}", status_code=404)
    rollout_action(hub, request, rollout_id, action)
    return Redirect(f"/ui/rollouts/{rollout_id}", status_code=HTTP_303_SEE_OTHER)


RELEASE_PAGES = Router(
    path="/ui",
    route_handlers=[
        releases_page,
        upload_release,
        start_rollout_form,
        rollout_page,
        rollout_action_form,
    ],
    include_in_schema=False,
)
