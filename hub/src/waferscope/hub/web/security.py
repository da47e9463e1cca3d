"""Authentication (bearer token or session cookie) and the one permission guard of every route.

The session cookie holds the same signed JWT a script would send as ``Authorization: Bearer``;
it is ``HttpOnly`` and ``SameSite=Strict``. A request that changes something and is authenticated
by the cookie must also come from the hub's own pages: its ``Origin`` (when the browser sends one)
has to name the hub (a second line of defence against cross-site requests after SameSite).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from waferscope.hub.auth import AuthError, Identity
from waferscope.hub.db.schema import User

if TYPE_CHECKING:
    from waferscope.hub.app import Hub

COOKIE: Final = "waferscope_session"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SCHEMA_PATH: Final = "/api/schema"


def hub_of(scope: Scope) -> Hub:
    hub: Hub = scope["app"].state.hub
    return hub


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _cookie(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def identify(hub: Hub, scope: Scope) -> Identity | None:
    """Who sent the request (a valid token of an active user), or None."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    token, via = _bearer(headers), "bearer"
    if token is None:
        token, via = _cookie(headers), "cookie"
    if token is None:
        return None
    try:
        username, _ = hub.tokens.verify(token)
    except AuthError:
        return None
    with hub.db.session() as s:
        from sqlalchemy import select

        row = s.execute(select(User.role, User.active).where(User.username == username)).first()
    if row is None or not row.active:
        return None
    # The role in the database wins: a demoted user loses rights before the token expires.
    identity = Identity(username=username, role=row.role, via=via)
    if via == "cookie" and scope.get("method", "GET") not in SAFE_METHODS:
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != headers.get("host", ""):
            return None
    return identity


class AuthMiddleware:
    """Puts the caller's :class:`Identity` (or None) into ``scope["identity"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            from anyio import to_thread

            hub = hub_of(scope)
            scope["identity"] = await to_thread.run_sync(identify, hub, scope)  # type: ignore[typeddict-unknown-key]
        await self.app(scope, receive, send)


def current(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity | None:
    identity = connection.scope.get("identity")
    return identity if isinstance(identity, Identity) else None


def require(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity:
    identity = current(connection)
    if identity is None:
        raise NotAuthorizedException("log in first")
    return identity


def is_public(handler: BaseRouteHandler, path: str = "") -> bool:
    """Marked public, or the OpenAPI document (served by litestar's own router)."""
    if handler.opt.get("public"):
        return True
    if "permission" in handler.opt:
        return False
    return path == SCHEMA_PATH or path.startswith(SCHEMA_PATH + "/")


def permission_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every route declares ``opt={"permission": ...}`` or ``opt={"public": True}``."""
    if is_public(handler, connection.scope["path"]):
        return
    identity = require(connection)
    permission = handler.opt.get("permission")
    if not isinstance(permission, str):
        raise PermissionDeniedException("this route declares no permission")  # fail closed
    if not identity.can(permission):
        raise PermissionDeniedException(f"the {identity.role} role may not do this ({permission})")
