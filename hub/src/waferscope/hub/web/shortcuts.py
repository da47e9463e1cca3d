"""The reviewer UI's keyboard shortcuts, in one list.

The list is rendered twice: into the help page (``?``) and, as JSON, into the ``data-shortcuts``
attribute of every page's ``<body>``, which the page script (``static/hub.js``) reads. The script
names no key itself; it only knows the actions by name, so a key is handled exactly when it is
listed here, and the help shows every key the script handles.

A key is written the way the browser's ``KeyboardEvent.key`` names it (``"j"``, ``"?"``,
``"Enter"``, ``"ArrowDown"``), with held modifiers in front (``"Control+Enter"``); a sequence is
its keys separated by a space (``"g q"``: *g*, then *q*).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

from markupsafe import Markup

Where = Literal["everywhere", "lists", "wafer"]

# what the help page calls each place, in its order
PLACES: Final[dict[Where, str]] = {
    "everywhere": "Everywhere",
    "lists": "Lists (queue, results)",
    "wafer": "Wafer page",
}
_SHOWN: Final = {
    "ArrowDown": "↓",
    "ArrowUp": "↑",
    "Escape": "Esc",
    "Control": "Ctrl",
    "Meta": "⌘",
}


@dataclass(frozen=True)
class Shortcut:
    keys: tuple[str, ...]
    """Alternatives: any of them runs the action."""
    action: str
    """The script's action, ``name`` or ``name:argument`` (``go:/ui/queue``)."""
    where: Where
    what: str
    """What it does, for the help page."""
    in_fields: bool = False
    """Also while the focus is in a text field (otherwise the key is the field's)."""

    def keys_html(self) -> Markup:
        """The keys as the help page shows them: ``<kbd>`` per key, a run of digits as a range."""
        if len(self.keys) > 3 and all(len(k) == 1 and k.isdigit() for k in self.keys):
            return Markup("{} … {}").format(_key_html(self.keys[0]), _key_html(self.keys[-1]))
        return Markup(" or ").join(_sequence_html(k) for k in self.keys)


def _key_html(key: str) -> Markup:
    parts = key.split("+") if len(key) > 1 else [key]
    return Markup("+").join(Markup("<kbd>{}</kbd>").format(_SHOWN.get(p, p)) for p in parts)


def _sequence_html(keys: str) -> Markup:
    return Markup(" ").join(_key_html(k) for k in keys.split(" "))


def _go(keys: str, target: str, what: str) -> Shortcut:
    return Shortcut((keys,), f"go:{target}", "everywhere", what)


SHORTCUTS: Final[tuple[Shortcut, ...]] = (
    _go("g q", "/ui/queue", "queue"),
    _go("g r", "/ui/results", "results"),
    _go("g a", "/ui/alerts", "alerts"),
    _go("g t", "/ui/trends", "trends"),
    _go("g d", "/ui/devices", "devices"),
    _go("?", "/ui/help", "this page"),
    Shortcut(("Escape",), "blur", "everywhere", "leave a text field", in_fields=True),
    Shortcut(("j", "ArrowDown"), "row-next", "lists", "next row"),
    Shortcut(("k", "ArrowUp"), "row-previous", "lists", "previous row"),
    Shortcut(("Enter", "o"), "row-open", "lists", "open the selected row"),
    Shortcut(tuple("123456789"), "choose", "wafer", "choose the pattern with that number"),
    Shortcut(("c",), "confirm", "wafer", "confirm the predicted pattern and root cause (saves)"),
    Shortcut(("Enter",), "save", "wafer", "save the label and go to the next wafer of the queue"),
    Shortcut(
        ("Control+Enter", "Meta+Enter"),
        "save",
        "wafer",
        "save the label, also from a text field",
        in_fields=True,
    ),
    Shortcut(("r",), "root-cause", "wafer", "edit the root cause"),
    Shortcut(("m",), "comment", "wafer", "write a comment"),
    Shortcut(("s",), "skip", "wafer", "skip (leave the queue without a label)"),
    Shortcut(("n",), "next-wafer", "wafer", "next wafer of the queue without saving"),
    Shortcut(("x",), "shap", "wafer", "compute the SHAP attribution"),
)


def by_place() -> list[tuple[str, list[Shortcut]]]:
    """(heading, shortcuts) per place, for the help page."""
    return [(title, [s for s in SHORTCUTS if s.where == where]) for where, title in PLACES.items()]


def script_table() -> str:
    """``{place: {key: {"action": ..., "fields": bool}}}`` as JSON, for ``data-shortcuts``."""
    table: dict[str, dict[str, dict[str, object]]] = {where: {} for where in PLACES}
    for s in SHORTCUTS:
        for key in s.keys:
            if key in table[s.where]:
                raise ValueError(f"shortcut {key!r} is listed twice for {s.where}")
            table[s.where][key] = {"action": s.action, "fields": s.in_fields}
    return json.dumps(table, separators=(",", ":"), ensure_ascii=False)


SCRIPT_TABLE: Final = script_table()
