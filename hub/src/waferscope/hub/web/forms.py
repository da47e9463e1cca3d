"""The UI's form posts: log in and out, review, skip, acknowledge, upload, manage users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from litestar import Router, get, post
from litestar.datastructures import Cookie, UploadFile
from litestar.params import FromPath, FromQuery, MultipartBody, URLEncodedBody
from litestar.response import Redirect, Template

from waferscope.hub import auth
from waferscope.hub.auth import AuthError
from waferscope.hub.store import alerts as alert_store
from waferscope.hub.store import queries, review, users
from waferscope.hub.upload import UploadError, parse_upload, store_upload
from waferscope.hub.web.security import COOKIE, require
from waferscope.hub.web.ui import ReviewDraft, page, wafer_view
from waferscope.hub.web.views import AnyRequest, HubDependency, client_addr
from waferscope.protocols.errors import WaferscopeError

if TYPE_CHECKING:
    from waferscope.hub.app import Hub


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _local(path: str | None, default: str = "/ui/queue") -> str:
    """Only redirect to paths on this site (no open redirect)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return default


# --------------------------------------------------------------------------- login
@get("/login", opt={"public": True})
async def login_page(next: FromQuery[str | None] = None) -> Template:
    return Template(template_name="login.html.j2", context={"next": _local(next), "error": None})


@dataclass
class LoginForm:
    username: str = ""
    password: str = ""
    next: str = "/ui/queue"


@post("/login", opt={"public": True}, sync_to_thread=True)
def login(
    request: AnyRequest, hub: HubDependency, data: URLEncodedBody[LoginForm]
) -> Template | Redirect:
    with hub.db.session(write=True) as s:
        user = users.authenticate(
            s, data.username.strip(), data.password, remote_addr=client_addr(request)
        )
        role = user.role if user else None
    if role is None:
        return Template(
            template_name="login.html.j2",
            context={"next": _local(data.next), "error": "Wrong user name or password."},
            status_code=401,
        )
    token = hub.tokens.issue(data.username.strip(), role)
    return Redirect(
        path=_local(data.next),
        status_code=303,
        cookies=[
            Cookie(
                key=COOKIE,
                value=token,
                httponly=True,
                samesite="strict",
                secure=hub.config.auth.secure_cookies,
                max_age=hub.tokens.ttl_s,
                path="/",
            )
        ],
    )


@post("/logout", opt=_perm(auth.VIEW))
async def logout() -> Redirect:
    return Redirect(
        path="/login", status_code=303, cookies=[Cookie(key=COOKIE, value="", max_age=0, path="/")]
    )


# --------------------------------------------------------------------------- review
@dataclass
class ReviewForm:
    pattern: str = ""
    root_cause: str = ""
    comment: str = ""


@post("/ui/wafers/{result_id:str}/review", opt=_perm(auth.REVIEW), sync_to_thread=True)
def review_form(
    request: AnyRequest,
    hub: HubDependency,
    result_id: FromPath[str],
    data: URLEncodedBody[ReviewForm],
) -> Redirect | Template:
    who = require(request)
    try:
        nxt = review.review_and_advance(
            hub.db,
            result_id,
            reviewer=who.username,
            pattern=data.pattern,
            root_cause=data.root_cause,
            comment=data.comment,
            remote_addr=client_addr(request),
            training=hub.config.training,
        ).next_id
    except review.ReviewError as exc:
        # the page again (422), with the reviewer's entries and the reason; nothing was saved
        reason = (
            "Choose a pattern (keys 1–9) before saving the label."
            if not data.pattern.strip()
            else f"The label was not saved: {exc}."
        )
        draft = ReviewDraft(reason, data.pattern.strip(), data.root_cause, data.comment)
        return wafer_view(request, hub, result_id, draft)
    return Redirect(path=f"/ui/wafers/{nxt}" if nxt else "/ui/queue", status_code=303)


@post("/ui/wafers/{result_id:str}/skip", opt=_perm(auth.REVIEW), sync_to_thread=True)
def skip_form(request: AnyRequest, hub: HubDependency, result_id: FromPath[str]) -> Redirect:
    who = require(request)
    with hub.db.session(write=True) as s:
        review.skip(s, result_id, reviewer=who.username)
        nxt = queries.next_in_queue(s, exclude=result_id)
    return Redirect(path=f"/ui/wafers/{nxt}" if nxt else "/ui/queue", status_code=303)


@dataclass
class BackForm:
    back: str = "/ui/alerts"


@post("/ui/alerts/{alert_id:str}/ack", opt=_perm(auth.ACK_ALERTS), sync_to_thread=True)
def ack_form(
    request: AnyRequest, hub: HubDependency, alert_id: FromPath[str], data: URLEncodedBody[BackForm]
) -> Redirect:
    who = require(request)
    with hub.db.session(write=True) as s:
        alert_store.acknowledge(s, alert_id, user=who.username, remote_addr=client_addr(request))
    return Redirect(path=_local(data.back, "/ui/alerts"), status_code=303)


# --------------------------------------------------------------------------- upload
@get("/ui/upload", opt=_perm(auth.UPLOAD))
async def upload_page(request: AnyRequest, hub: HubDependency) -> Template:
    return page(request, hub, "upload.html.j2", error=None, ids=None)


@post("/ui/upload", opt=_perm(auth.UPLOAD), sync_to_thread=True)
def upload_form(
    request: AnyRequest, hub: HubDependency, data: MultipartBody[dict[str, UploadFile]]
) -> Template | Redirect:
    who = require(request)
    file = data.get("file")
    if file is None:
        return page(request, hub, "upload.html.j2", error="Choose a file first.", ids=None)
    content = file.file.read()
    name = file.filename or "upload"
    try:
        parsed = parse_upload(content, name, hub.classifier)
    except (UploadError, WaferscopeError) as exc:
        return page(request, hub, "upload.html.j2", error=str(exc), ids=None)
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
    if len(ids) == 1:
        return Redirect(path=f"/ui/wafers/{ids[0]}", status_code=303)
    return page(request, hub, "upload.html.j2", error=None, ids=ids, name=name)


# --------------------------------------------------------------------------- users
def _users(request: AnyRequest, hub: Hub, error: str | None) -> Template:
    with hub.db.session() as s:
        rows = users.list_users(s)
    return page(request, hub, "users.html.j2", rows=rows, roles=auth.ROLES, error=error)


# async with the work in a thread: litestar 2.25 wraps the second sync_to_thread handler of one
# path twice (it then returns an un-awaited coroutine), so one handler per path stays async.
@get("/ui/users", opt=_perm(auth.USERS))
async def users_page(request: AnyRequest, hub: HubDependency) -> Template:
    return await to_thread.run_sync(_users, request, hub, None)


@dataclass
class UserForm:
    username: str = ""
    password: str = ""
    role: str = "reviewer"


@post("/ui/users", opt=_perm(auth.USERS), sync_to_thread=True)
def users_form(
    request: AnyRequest, hub: HubDependency, data: URLEncodedBody[UserForm]
) -> Template | Redirect:
    who = require(request)
    try:
        with hub.db.session(write=True) as s:
            users.add_user(s, data.username.strip(), data.password, data.role, actor=who.username)
    except AuthError as exc:
        return _users(request, hub, str(exc))
    return Redirect(path="/ui/users", status_code=303)


ROUTERS = [
    Router(path="/", route_handlers=[login_page, login, logout]),
    Router(path="/", route_handlers=[review_form, skip_form, ack_form]),
    Router(path="/", route_handlers=[upload_page, upload_form]),
    Router(path="/", route_handlers=[users_page, users_form]),
]
