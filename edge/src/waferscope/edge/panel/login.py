"""The panel's login routes and the one guard that applies ``panel.auth`` to every route.

Routes declare what they are with ``opt``: ``{"writes": True}`` changes something (needs an
operator when a token hash is configured), ``{"open": True}`` is never behind the login (health,
metrics, the login form itself, the model reload with its own token); anything else is a read,
open while ``panel.read_only_open`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from waferscope.edge.panel.operator_auth import COOKIE, CSRF_HEADER, OperatorAuth

AnyConnection = ASGIConnection[Any, Any, Any, Any]
WRITES = {"writes": True}
OPEN = {"open": True}


def auth_of(connection: AnyConnection) -> OperatorAuth:
    auth: OperatorAuth = connection.app.state.operator_auth
    return auth


def safe_next(target: str | None) -> str:
    """A path on this panel to go back to (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def panel_guard(connection: AnyConnection, handler: BaseRouteHandler) -> None:
    """Puts the operator (or None) in ``scope["operator"]``; refuses what needs a login."""
    auth = auth_of(connection)
    connection.scope["operator"] = None  # type: ignore[typeddict-unknown-key]
    connection.scope["operator_via"] = None  # type: ignore[typeddict-unknown-key]
    if not auth.required:
        return
    cookie = connection.cookies.get(COOKIE)
    name, via = auth.operator(cookie), "cookie"
    if name is None and auth.bearer_ok(connection.headers.get("authorization")):
        name, via = "token", "bearer"
    connection.scope["operator"] = name  # type: ignore[typeddict-unknown-key]
    connection.scope["operator_via"] = via if name else None  # type: ignore[typeddict-unknown-key]
    if handler.opt.get("open"):
        return
    writes = bool(handler.opt.get("writes"))
    if not writes and auth.read_only_open:
        return
    if name is None:
        raise NotAuthorizedException("log in as the operator first")
    is_api = connection.scope["path"].startswith("/api")
    sent = connection.headers.get(CSRF_HEADER)
    if writes and via == "cookie" and is_api and not auth.csrf_ok(cookie, sent):
        raise PermissionDeniedException("send the session's CSRF token as X-CSRF-Token")


def operator_of(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    """(name, how: 'cookie' | 'bearer') of the operator the guard let through."""
    return request.scope.get("operator"), request.scope.get("operator_via")  # type: ignore[return-value]


def form_csrf_ok(request: Request[Any, Any, Any], sent: str) -> bool:
    """A form post with a session must carry its CSRF token (bearer posts and open panels pass)."""
    auth = auth_of(request)
    _, via = operator_of(request)
    return not auth.required or via != "cookie" or auth.csrf_ok(request.cookies.get(COOKIE), sent)


def viewer(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the pages show of the login: whether one is needed, who is in, the CSRF token."""
    auth = auth_of(request)
    name, via = operator_of(request)
    cookie = request.cookies.get(COOKIE) if via == "cookie" else None
    return {"required": auth.required, "operator": name, "csrf": auth.csrf(cookie)}


def not_authorized(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if request.url.path.startswith("/api"):
        return Response(
            {"status_code": 401, "detail": "log in as the operator first"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="waferscope-edge-panel"'},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(path=f"/login?next={quote(target)}", status_code=303)


@get("/login", opt=OPEN, sync_to_thread=False)
def login_page(request: Request[Any, Any, Any], next: FromQuery[str] = "/") -> Template:
    return Template(
        template_name="login.html.j2",
        context={"next": safe_next(next), "error": None, "required": auth_of(request).required},
    )


@dataclass
class LoginForm:
    name: str = ""
    token: str = ""
    next: str = "/"


@post("/login", opt=OPEN, sync_to_thread=True, status_code=303)
def login_submit(
    request: Request[Any, Any, Any], state: State, data: URLEncodedBody[LoginForm]
) -> Response[Any]:
    auth = auth_of(request)
    name = " ".join(data.name.split())[:64]
    cookie = auth.login(name, data.token) if name else None
    if cookie is None:
        return Template(
            template_name="login.html.j2",
            context={
                "next": safe_next(data.next),
                "error": "Enter your name and the operator token."
                if not name
                else "Wrong operator token.",
                "required": auth.required,
            },
            status_code=401,
        )
    return Redirect(
        path=safe_next(data.next),
        status_code=303,
        cookies=[
            Cookie(
                key=COOKIE,
                value=cookie,
                httponly=True,
                samesite="strict",
                path="/",
                max_age=int(auth.session_s),
            )
        ],
    )


@post("/logout", opt=OPEN, sync_to_thread=False, status_code=303)
def logout() -> Redirect:
    return Redirect(
        path="/",
        status_code=303,
        cookies=[Cookie(key=COOKIE, value="", max_age=0, path="/", httponly=True)],
    )


ROUTES = [login_page, login_submit, logout]
