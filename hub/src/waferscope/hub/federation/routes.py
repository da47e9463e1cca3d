"""The federation's routes: ``GET /api/v1/federation``, node keys, the ``/ui/federation`` page."""

from __future__ import annotations

from typing import Any

from litestar import Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from waferscope.hub import auth
from waferscope.hub.federation.control import FederationControl, FederationError
from waferscope.hub.web.security import require
from waferscope.hub.web.ui import page
from waferscope.hub.web.views import AnyRequest, HubDependency, provide_hub
from waferscope.protocols.errors import TopicError


def provide_federation(state: State) -> FederationControl:
    return provide_hub(state).federation


Control = NamedDependency[FederationControl]


@get("/api/v1/federation", opt={"permission": auth.VIEW}, sync_to_thread=True)
def get_federation(federation: Control) -> dict[str, Any]:
    """SuperLink state, round progress (gate macro-F1, bytes, time, DP budget) and per-edge
    participation of the current federated run."""
    return federation.progress()


@post(
    "/api/v1/federation/nodes/{device_id:str}",
    opt={"permission": auth.MODELS},
    sync_to_thread=True,
    status_code=201,
)
def provision_node(
    request: AnyRequest, federation: Control, device_id: FromPath[str]
) -> dict[str, Any]:
    """Issue and register a node key pair for an edge (engineer, admin)."""
    require(request)
    try:
        record = federation.provision(device_id)
    except (FederationError, TopicError) as exc:
        raise ClientException(str(exc)) from None
    return {"device_id": device_id, **record}


@get(
    "/api/v1/federation/nodes/{device_id:str}/keys",
    opt={"permission": auth.MODELS},
    sync_to_thread=True,
    media_type="application/gzip",
)
def node_keys(federation: Control, device_id: FromPath[str]) -> Response[bytes]:
    """The edge's key bundle: ca.crt, <device>.key, <device>.pub (tar.gz; engineer, admin)."""
    try:
        data = federation.key_bundle(device_id)
    except (FederationError, TopicError) as exc:
        raise NotFoundException(str(exc)) from None
    return Response(
        data,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{device_id}-federation.tar.gz"'},
    )


@get("/ui/federation", opt={"permission": auth.VIEW}, sync_to_thread=True)
def federation_page(request: AnyRequest, hub: HubDependency, federation: Control) -> Template:
    return page(request, hub, "federation.html.j2", fed=federation.progress())


federation_router = Router(
    path="/",
    route_handlers=[get_federation, provision_node, node_keys, federation_page],
    dependencies={"federation": Provide(provide_federation, sync_to_thread=False)},
)
