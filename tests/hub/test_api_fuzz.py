"""Schemathesis over the hub's own OpenAPI document, for every role and for nobody.

The schema is loaded from the running app, so every route the app has when the test runs is
covered (no fixed list). Each operation gets a small, derandomised budget of generated requests
per caller; the checks are: no server error, responses conform to the documented schema, and a
caller whose role lacks the route's declared permission is refused (401/403, or the login
redirect for pages) whatever it sends.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hub_testing import bearer
from hypothesis import HealthCheck, Phase, given, settings

from waferscope.hub.auth import ROLE_PERMISSIONS, ROLES
from waferscope.hub.web.security import SCHEMA_PATH, is_public

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES_PER_CALLER = 4
CALLERS: tuple[str | None, ...] = (None, *ROLES)  # None: no credentials at all


def _declared_permissions(app: Any) -> dict[tuple[str, str], tuple[bool, str | None]]:
    """(METHOD, openapi path) -> (public, permission) from each route handler's ``opt``."""
    out: dict[tuple[str, str], tuple[bool, str | None]] = {}
    for route in app.routes:
        path = re.sub(r"\{([^}:]+):[^}]+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                out[(method.upper(), path)] = (
                    is_public(handler, route.path),
                    handler.opt.get("permission"),
                )
    return out


def _refused(response: Any, path: str) -> bool:
    if response.status_code in (401, 403):
        return True
    location = " ".join(response.headers.get("location", []))  # schemathesis: name -> values
    return not path.startswith("/api") and response.status_code == 303 and "/login" in location


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions) + f" | {str(exc)[-400:]}"
    return str(exc)[:700]


def _run_operation(
    hub: Any, operation: Any, caller: str | None, permitted: bool, failures: list[str]
) -> None:
    headers = bearer(hub, caller) if caller else {}
    label = f"{caller or 'anonymous'} {operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES_PER_CALLER,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def one(case: Any) -> None:
        if caller is None:
            (case.headers or {}).pop("Authorization", None)
        response = case.call(headers=headers, allow_redirects=False)
        if not permitted:
            if not _refused(response, operation.path):
                failures.append(f"{label}: not refused ({response.status_code}) for {case!r}")
            return
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        one()
    except (Exception, FailureGroup) as exc:  # collect every failure, report them at the end
        failures.append(f"{label}: {type(exc).__name__}: {_describe(exc)}")


def test_every_operation_for_every_caller(sqlite_hub: Any) -> None:
    app = sqlite_hub.web_app()
    schema = schemathesis.openapi.from_asgi(f"{SCHEMA_PATH}/openapi.json", app)
    declared = _declared_permissions(app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    failures: list[str] = []
    for operation in operations:
        key = (operation.method.upper(), operation.path)
        assert key in declared, f"{key} is in the schema but not among the app's routes"
        public, permission = declared[key]
        assert public or permission, f"{key} declares no permission"
        # admin last: it may change users (never its own credentials: names are generated)
        for caller in CALLERS:
            if public:
                permitted = True
            elif caller is None:
                permitted = False
            else:
                permitted = permission in ROLE_PERMISSIONS[caller]
            _run_operation(sqlite_hub, operation, caller, permitted, failures)
    assert not failures, "\n".join(failures[:60]) + f"\n({len(failures)} failures)"
