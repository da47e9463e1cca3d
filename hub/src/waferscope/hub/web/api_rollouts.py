"""REST routes of rollouts: start one, read its waves and devices, pause / resume / abort / roll
back (each action role-checked and audited)."""

from __future__ import annotations

from typing import Any

from litestar import Router, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody

from waferscope.hub import auth
from waferscope.hub.app import Hub
from waferscope.hub.db.schema import Rollout, RolloutDevice
from waferscope.hub.releases import ReleaseNotFoundError
from waferscope.hub.rollout import plan
from waferscope.hub.rollout.store import (
    RolloutNotFoundError,
    act,
    create_rollout,
    devices_of,
    get_rollout,
    list_rollouts,
)
from waferscope.hub.web.api_releases import HubDep
from waferscope.hub.web.security import require
from waferscope.hub.web.views import AnyRequest, client_addr, iso

ACTIONS = ("pause", "resume", "abort", "rollback")


def rollout_json(row: Rollout, devices: list[RolloutDevice] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rollout_id": row.rollout_id,
        "release_id": row.release_id,
        "state": row.state,
        "wave": row.wave + 1,
        "waves": row.waves,
        "gates": row.gates,
        "wave_results": row.wave_results or [],
        "group": row.group,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    if devices is not None:
        out["devices"] = [
            {
                "device_id": d.device_id,
                "wave": d.wave + 1,
                "state": d.state,
                "last_ack": d.last_ack,
                "previous_model_version": d.previous_model_version,
                "active_model_version": d.active_model_version,
                "error": d.error,
                "report": d.report,
                "sent_at": iso(d.sent_at),
            }
            for d in devices
        ]
    return out


def start_rollout(hub: Hub, request: AnyRequest, doc: Any) -> dict[str, Any]:
    """Plan and record a rollout for the caller (shared with the rollout page)."""
    who = require(request)
    try:
        req = plan.parse_request(doc)
        with hub.db.session(write=True) as s:
            row = create_rollout(s, req, actor=who.username, remote_addr=client_addr(request))
            body = rollout_json(row, devices_of(s, row.rollout_id))
    except ReleaseNotFoundError as exc:
        raise NotFoundException(str(exc)) from None
    except plan.RolloutError as exc:
        raise ClientException(str(exc)) from None
    if hub.rollouts is not None:
        hub.rollouts.wake()
    return body


def rollout_action(hub: Hub, request: AnyRequest, rollout_id: str, action: str) -> dict[str, Any]:
    """Apply a manual action for the caller (shared with the rollout page's buttons)."""
    who = require(request)
    try:
        with hub.db.session(write=True) as s:
            row = act(s, rollout_id, action, actor=who.username, remote_addr=client_addr(request))
            body = rollout_json(row)
    except RolloutNotFoundError as exc:
        raise NotFoundException(str(exc)) from None
    except plan.RolloutError as exc:
        raise ClientException(str(exc), status_code=409) from None
    if hub.rollouts is not None:
        hub.rollouts.wake()
    return body


@post("/", opt={"permission": auth.RELEASES}, sync_to_thread=True, status_code=201)
def post_rollout(
    hub: HubDep, request: AnyRequest, data: JSONBody[dict[str, Any]]
) -> dict[str, Any]:
    """Start a rollout: ``{"release_id", "devices"|"site" (neither: every device), "waves":
    [{"canary": 1}, {"percent": 50}, {"percent": 100}], "gates": {...}}``."""
    return start_rollout(hub, request, data)


@get("/", opt={"permission": auth.VIEW}, sync_to_thread=True)
def get_rollouts(hub: HubDep) -> dict[str, Any]:
    """Rollouts, newest first."""
    with hub.db.session() as s:
        return {"rollouts": [rollout_json(r) for r in list_rollouts(s)]}


@get("/{rollout_id:str}", opt={"permission": auth.VIEW}, sync_to_thread=True)
def get_one_rollout(hub: HubDep, rollout_id: FromPath[str]) -> dict[str, Any]:
    """One rollout with its per-device state and the gate figures of each wave."""
    try:
        with hub.db.session() as s:
            return rollout_json(get_rollout(s, rollout_id), devices_of(s, rollout_id))
    except RolloutNotFoundError as exc:
        raise NotFoundException(str(exc)) from None


@post(
    "/{rollout_id:str}/{action:str}",
    opt={"permission": auth.RELEASES},
    sync_to_thread=True,
    status_code=200,
)
def post_action(
    hub: HubDep, request: AnyRequest, rollout_id: FromPath[str], action: FromPath[str]
) -> dict[str, Any]:
    """pause, resume, abort or rollback a rollout."""
    if action not in ACTIONS:
        raise NotFoundException(f"no rollout action {action!r} (one of {', '.join(ACTIONS)})")
    return rollout_action(hub, request, rollout_id, action)


ROLLOUTS_ROUTER = Router(
    path="/api/v1/rollouts",
    route_handlers=[post_rollout, get_rollouts, get_one_rollout, post_action],
    tags=["rollouts"],
)
