"""The REST API's administrative routes: audit log, dead letters, users, model registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from litestar import Router, get, patch, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from waferscope.hub import auth
from waferscope.hub.auth import AuthError
from waferscope.hub.db.schema import DeadLetter
from waferscope.hub.store import users
from waferscope.hub.store.audit import recent_audit
from waferscope.hub.web.security import require
from waferscope.hub.web.views import AnyRequest, HubDependency

if TYPE_CHECKING:
    from waferscope.hub.app import Hub

V1 = "/api/v1"


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


# --------------------------------------------------------------------------- admin
@get(f"{V1}/audit", opt=_perm(auth.AUDIT), sync_to_thread=True)
def get_audit(
    hub: HubDependency,
    action: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
) -> dict[str, Any]:
    """The audit log, newest first."""
    with hub.db.session() as s:
        rows = recent_audit(s, limit=max(1, min(limit, 1000)), action=action)
    return {
        "entries": [
            {
                "at": e.at.isoformat() + "Z",
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
                "remote_addr": e.remote_addr,
            }
            for e in rows
        ]
    }


@get(f"{V1}/dead-letters", opt=_perm(auth.DEAD_LETTERS), sync_to_thread=True)
def get_dead_letters(hub: HubDependency, limit: FromQuery[int] = 100) -> dict[str, Any]:
    """Messages the ingest could not use."""
    from sqlalchemy import select

    with hub.db.session() as s:
        rows = s.scalars(
            select(DeadLetter).order_by(DeadLetter.id.desc()).limit(max(1, min(limit, 1000)))
        ).all()
        return {
            "dead_letters": [
                {
                    "id": d.id,
                    "received_at": d.received_at.isoformat() + "Z",
                    "topic": d.topic,
                    "device_id": d.device_id,
                    "error": d.error,
                    "payload_size": d.payload_size,
                    "payload_head": d.payload[:200].decode("utf-8", "replace"),
                }
                for d in rows
            ]
        }


@dataclass
class NewUser:
    username: str
    password: str
    role: str


@dataclass
class UserChange:
    role: str | None = None
    active: bool | None = None
    password: str | None = None


def _user_rows(hub: Hub) -> dict[str, Any]:
    with hub.db.session() as s:
        return {
            "users": [
                {
                    "username": u.username,
                    "role": u.role,
                    "active": u.active,
                    "last_login": u.last_login.isoformat() + "Z" if u.last_login else None,
                }
                for u in users.list_users(s)
            ]
        }


# async with the work in a thread: see the note on forms.users_page
@get(f"{V1}/users", opt=_perm(auth.USERS))
async def get_users(hub: HubDependency) -> dict[str, Any]:
    """Local users."""
    return await to_thread.run_sync(_user_rows, hub)


@post(f"{V1}/users", opt=_perm(auth.USERS), sync_to_thread=True)
def add_user(request: AnyRequest, hub: HubDependency, data: JSONBody[NewUser]) -> dict[str, Any]:
    """Create a user."""
    who = require(request)
    try:
        with hub.db.session(write=True) as s:
            users.add_user(s, data.username, data.password, data.role, actor=who.username)
    except AuthError as exc:
        raise ClientException(str(exc)) from None
    return {"username": data.username, "role": data.role}


@patch(f"{V1}/users/{{username:str}}", opt=_perm(auth.USERS), sync_to_thread=True)
def change_user(
    request: AnyRequest, hub: HubDependency, username: FromPath[str], data: JSONBody[UserChange]
) -> dict[str, Any]:
    """Change a user's role, password or whether the account is active."""
    who = require(request)
    try:
        with hub.db.session(write=True) as s:
            if users.get_user(s, username) is None:
                raise NotFoundException(f"no user {username!r}")
            if data.role is not None:
                users.set_role(s, username, data.role, actor=who.username)
            if data.active is not None:
                users.set_active(s, username, data.active, actor=who.username)
            if data.password is not None:
                users.set_password(s, username, data.password, actor=who.username)
    except AuthError as exc:
        raise ClientException(str(exc)) from None
    return {"username": username}


@get(f"{V1}/models", opt=_perm(auth.VIEW), sync_to_thread=True)
def get_models(hub: HubDependency) -> dict[str, Any]:
    """Engine bundles in the model registry."""
    from waferscope.hub.registry import list_models

    with hub.db.session() as s:
        return {
            "models": [
                {
                    "model_version": m.model_version,
                    "sha256": m.sha256,
                    "size_bytes": m.size_bytes,
                    "state": m.state,
                    "registered_by": m.registered_by,
                    "created_at": m.created_at.isoformat() + "Z",
                    "pattern_classes": (m.manifest or {}).get("patternClasses", []),
                }
                for m in list_models(s)
            ]
        }


ROUTERS = [
    Router(
        path="/",
        route_handlers=[get_audit, get_dead_letters, get_users, add_user, change_user, get_models],
    )
]
