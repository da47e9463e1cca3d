"""Every route, for every role and for nobody: the permission check holds everywhere."""

from __future__ import annotations

import itertools
import re

import pytest
from hub_testing import ROLE_USERS, bearer
from litestar.testing import TestClient

from waferscope.hub.auth import ROLE_PERMISSIONS, ROLES, TokenIssuer
from waferscope.hub.web.security import is_public

DUMMY = "00000000-0000-7000-8000-000000000000"
CREDENTIAL_ROUTES = {"/login", "/api/v1/auth/token"}


def _routes(app):  # type: ignore[no-untyped-def]
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods):
                if method in ("HEAD", "OPTIONS"):
                    continue
                path = re.sub(r"\{[^}:]+:path\}", "hub.css", route.path)
                path = re.sub(r"\{[^}]+\}", DUMMY, path)
                yield method, path, handler


def test_every_route_checks_the_role(sqlite_hub) -> None:  # type: ignore[no-untyped-def]
    app = sqlite_hub.web_app()
    routes = list(_routes(app))
    assert len(routes) > 30
    checked = {"public": 0, "allowed": 0, "refused": 0}
    with TestClient(app) as client:
        for method, path, handler in routes:
            public = is_public(handler, path)
            permission = handler.opt.get("permission")
            assert public or permission, f"{method} {path} declares no permission"
            anon = client.request(method, path, follow_redirects=False)
            if public:
                # only the credential checks themselves answer 401 to a stranger
                assert anon.status_code != 403, (method, path)
                assert anon.status_code != 401 or path in CREDENTIAL_ROUTES, (method, path)
                checked["public"] += 1
                continue
            if path.startswith("/api"):
                assert anon.status_code == 401, (method, path, anon.status_code)
            else:
                assert anon.status_code == 303 and "/login" in anon.headers["location"]
            for role in ROLES:
                res = client.request(
                    method, path, headers=bearer(sqlite_hub, role), follow_redirects=False
                )
                assert res.status_code < 500, (role, method, path, res.text[-500:])
                if permission in ROLE_PERMISSIONS[role]:
                    assert res.status_code not in (401, 403), (role, method, path, res.text)
                    checked["allowed"] += 1
                else:
                    assert res.status_code == 403, (role, method, path, res.status_code)
                    checked["refused"] += 1
    assert min(checked.values()) > 0, checked


def test_roles_are_cumulative() -> None:
    for lower, higher in itertools.pairwise(ROLES):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]
    assert "users" in ROLE_PERMISSIONS["admin"] and "users" not in ROLE_PERMISSIONS["engineer"]
    assert "review" not in ROLE_PERMISSIONS["operator"]


def test_bad_tokens_are_refused(sqlite_hub) -> None:  # type: ignore[no-untyped-def]
    forged = TokenIssuer("another-secret-" + "y" * 40, 3600).issue("admin1", "admin")
    expired = sqlite_hub.tokens.issue("admin1", "admin", ttl_s=-10)
    unknown = sqlite_hub.tokens.issue("mallory", "admin")
    with TestClient(sqlite_hub.web_app()) as client:
        for token in (forged, expired, unknown, "not-a-jwt"):
            res = client.get("/api/v1/results", headers={"Authorization": f"Bearer {token}"})
            assert res.status_code == 401, token


def test_role_comes_from_the_database(sqlite_hub) -> None:  # type: ignore[no-untyped-def]
    """A token minted while the user was admin loses admin rights once demoted."""
    from waferscope.hub.store.users import set_active, set_role

    headers = bearer(sqlite_hub, "admin")
    with TestClient(sqlite_hub.web_app()) as client:
        assert client.get("/api/v1/users", headers=headers).status_code == 200
        with sqlite_hub.db.session(write=True) as s:
            set_role(s, ROLE_USERS["admin"], "operator", actor="test")
        assert client.get("/api/v1/users", headers=headers).status_code == 403
        with sqlite_hub.db.session(write=True) as s:
            set_active(s, ROLE_USERS["admin"], False, actor="test")
        assert client.get("/api/v1/results", headers=headers).status_code == 401


@pytest.mark.parametrize("origin", ["https://evil.example", None])
def test_cookie_posts_need_our_origin(sqlite_hub, origin: str | None) -> None:  # type: ignore[no-untyped-def]
    from waferscope.hub.web.security import COOKIE

    token = sqlite_hub.tokens.issue("operator1", "operator")
    with TestClient(sqlite_hub.web_app()) as client:
        client.cookies.set(COOKIE, token)
        headers = {"Origin": origin} if origin else {}
        res = client.post(
            f"/ui/alerts/{DUMMY}/ack",
            data={"back": "/ui/alerts"},
            headers=headers,
            follow_redirects=False,
        )
        if origin:
            assert res.status_code == 303 and "/login" in res.headers["location"]
        else:
            assert res.status_code == 303 and res.headers["location"] == "/ui/alerts"
