"""The hub's ASGI app: routes, templates, static files, OpenAPI, auth, health and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope
from prometheus_client import CONTENT_TYPE_LATEST

from waferscope.hub.federation.routes import federation_router
from waferscope.hub.web import api, api_admin, drift, forms, shortcuts, training, ui
from waferscope.hub.web.api_releases import RELEASES_ROUTER
from waferscope.hub.web.api_rollouts import ROLLOUTS_ROUTER
from waferscope.hub.web.security import SCHEMA_PATH, AuthMiddleware, current, permission_guard
from waferscope.hub.web.ui_releases import RELEASE_PAGES
from waferscope.hub.web.ui_support import CorruptBlobError
from waferscope.hub.web.views import HUB_DEPENDENCY, HubDependency

if TYPE_CHECKING:
    from waferscope.hub.app import Hub

HERE = Path(__file__).parent


@get("/healthz", opt={"public": True}, include_in_schema=True)
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", opt={"public": True}, sync_to_thread=True)
def readyz(hub: HubDependency) -> Response[dict[str, Any]]:
    """Readiness: database reachable and migrated, blob store usable, broker connected."""
    checks = hub.ready()
    ok = all(checks.values())
    return Response({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@get("/metrics", opt={"public": True}, media_type=CONTENT_TYPE_LATEST, sync_to_thread=True)
def metrics(hub: HubDependency) -> Response[bytes]:
    """Prometheus metrics of this hub process (devices and review queue read from the database,
    hence in a thread)."""
    return Response(hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return not path.startswith("/api") and path not in ("/metrics", "/healthz", "/readyz")


def _not_authorized(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(path=f"/login?next={quote(target)}", status_code=303)
    return Response(
        {"status_code": 401, "detail": str(getattr(exc, "detail", "")) or "log in first"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="waferscope-hub"'},
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if _wants_html(request):
        return Template(
            template_name="error.html.j2",
            context={
                "code": exc.status_code,
                "detail": exc.detail,
                "me": current(request),
                "can": lambda p: False,
                "open_alerts": 0,
                "path": request.url.path,
            },
            status_code=exc.status_code,
        )
    return Response(
        {"status_code": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
        media_type=MediaType.JSON,
    )


def _counter(hub: Hub) -> Any:
    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            handler = scope.get("route_handler")
            route = next(iter(handler.paths), "?") if handler is not None else "?"
            status = f"{int(message['status']) // 100}xx"
            hub.metrics.http_requests.labels(route=route, status=status).inc()

    return before_send


def _template_globals(engine: JinjaTemplateEngine) -> None:
    """What every page may use: the keyboard shortcuts (help page, ``data-shortcuts``)."""
    engine.engine.globals["shortcut_table"] = shortcuts.SCRIPT_TABLE
    engine.engine.globals["shortcut_places"] = shortcuts.by_place


def create_app(hub: Hub) -> Litestar:
    from importlib.metadata import version

    openapi = OpenAPIConfig(
        title="waferscope hub",
        version=version("waferscope-hub"),
        description="Results, review queue, labels, alerts and devices of the waferscope hub. "
        "Get a token from POST /api/v1/auth/token and send it as 'Authorization: Bearer'.",
        path=SCHEMA_PATH,
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        security=[{"bearer": []}],
    )
    static = create_static_files_router(
        path="/static", directories=[HERE / "static"], opt={"public": True}
    )

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            static,
            *api.ROUTERS,
            *api_admin.ROUTERS,
            RELEASES_ROUTER,
            ROLLOUTS_ROUTER,
            *ui.ROUTERS,
            *forms.ROUTERS,
            drift.ROUTER,
            *training.ROUTES,
            federation_router,
            RELEASE_PAGES,
        ],
        guards=[permission_guard],
        middleware=[DefineMiddleware(AuthMiddleware)],
        template_config=TemplateConfig(
            directory=HERE / "templates",
            engine=JinjaTemplateEngine,
            engine_callback=_template_globals,
        ),
        openapi_config=openapi,
        exception_handlers={
            NotAuthorizedException: _not_authorized,
            PermissionDeniedException: _http_error,
            NotFoundException: _http_error,
            CorruptBlobError: _http_error,
        },
        state=State({"hub": hub}),
        dependencies=HUB_DEPENDENCY,
        request_max_body_size=hub.config.http.max_upload_bytes,
        before_send=[_counter(hub)],
    )
