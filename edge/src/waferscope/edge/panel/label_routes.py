"""Panel routes where an operator confirms or corrects a result: the label goes to the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request, Router, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, JSONBody, URLEncodedBody
from litestar.response import Redirect

from waferscope.edge.labels import LabelError, label_of, panel_label
from waferscope.edge.panel.login import WRITES, form_csrf_ok, operator_of
from waferscope.edge.store import Store

if TYPE_CHECKING:
    from waferscope.edge.app import Wiring


@dataclass(frozen=True, slots=True)
class Labelling:
    """What the label routes need: the store, this edge's id and the engine's classes."""

    store: Store
    device_id: str
    classes: tuple[str, ...]

    def label(self, result_id: str, pattern: str, operator: str) -> dict[str, Any]:
        if self.store.result(result_id) is None:
            raise NotFoundException(f"no result {result_id}")
        if pattern.strip() not in self.classes:
            raise ClientException(
                f"pattern {pattern.strip()!r} is not a class of the engine"
                f" ({', '.join(self.classes)})"
            )
        try:
            panel_label(
                self.store, self.device_id, result_id, pattern, operator=operator[:64] or "operator"
            )
        except LabelError as exc:
            raise ClientException(str(exc)) from None
        stored = label_of(self.store, result_id)
        assert stored is not None
        return stored


def provide_labelling(state: State) -> Labelling:
    wiring: Wiring = state.wiring
    return Labelling(
        wiring.store, wiring.config.device_id, tuple(wiring.slot.current.bundle.pattern_classes)
    )


LabellingDep = NamedDependency[Labelling]


@dataclass
class LabelForm:
    pattern: str = ""
    operator: str = "operator"
    csrf: str = ""


def _labeller(request: Request[Any, Any, Any], given: str) -> str:
    """The logged-in operator's name where there is a session, else the name the form gave."""
    name, via = operator_of(request)
    return name if via == "cookie" and name else given.strip()


@post("/wafers/{result_id:str}/label", sync_to_thread=True, opt=WRITES)
def label_form(
    request: Request[Any, Any, Any],
    labelling: LabellingDep,
    result_id: FromPath[str],
    data: URLEncodedBody[LabelForm],
) -> Redirect:
    """Confirm (the predicted pattern) or correct (another pattern) from the wafer page."""
    if not form_csrf_ok(request, data.csrf):
        raise PermissionDeniedException("the form's CSRF token does not match the session")
    labelling.label(result_id, data.pattern, _labeller(request, data.operator))
    return Redirect(path=f"/wafers/{result_id}", status_code=303)


@dataclass
class LabelRequest:
    pattern: str
    operator: str = "api"


@post("/api/wafers/{result_id:str}/label", sync_to_thread=True, status_code=200, opt=WRITES)
def api_label(
    request: Request[Any, Any, Any],
    labelling: LabellingDep,
    result_id: FromPath[str],
    data: JSONBody[LabelRequest],
) -> dict[str, Any]:
    """The same as JSON: ``{"pattern": ..., "operator": ...}``; answers the stored label."""
    return labelling.label(result_id, data.pattern, _labeller(request, data.operator))


label_router = Router(
    path="/",
    route_handlers=[label_form, api_label],
    dependencies={"labelling": Provide(provide_labelling, sync_to_thread=False)},
)
