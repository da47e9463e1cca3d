"""What a PromQL expression selects: metric names and the label matchers on each.

A small scanner, enough for the rules and the dashboard under ``monitoring/``: it skips strings,
range and subquery brackets, function names, aggregation and binary-operator keywords, grouping
label lists (``by (...)``, ``on (...)``, ``group_left (...)``) and Grafana variables, and returns
every vector selector it finds. Imported by the monitoring tests (their conftest puts this folder
on ``sys.path``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = AGGREGATIONS | GROUPING | {"and", "or", "unless", "bool", "offset", "atan2"}
NUMBERS = {"inf", "nan"}

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DURATION = re.compile(r"\s*(\d+(ms|[smhdwy]))+")
_MATCHER = re.compile(
    r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*')\s*"
)
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Selector:
    name: str
    matchers: list[Matcher] = field(default_factory=list)


def _skip_string(s: str, i: int) -> int:
    quote = s[i]
    i += 1
    while s[i] != quote:
        i += 2 if s[i] == "\\" else 1
    return i + 1


def _skip_brackets(s: str, i: int, open_: str, close: str) -> int:
    depth = 0
    while True:
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def _matchers(body: str) -> list[Matcher]:
    out = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            if body[pos:].strip() in ("", ","):
                break
            raise ValueError(f"cannot read label matchers {body!r}")
        value = m.group(3)[1:-1]
        out.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
        if pos < len(body) and body[pos] == ",":
            pos += 1
    return out


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of ``expr`` (Grafana variables allowed)."""
    s = _GRAFANA_VAR.sub("var", expr)
    out: list[Selector] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
        elif c == "[":
            i = _skip_brackets(s, i, "[", "]")
        elif c == "{":  # a selector without a name: {__name__="..."}
            end = _skip_brackets(s, i, "{", "}")
            matchers = _matchers(s[i + 1 : end - 1])
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            out.append(Selector(names[0] if names else "", matchers))
            i = end
        elif c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            m = _NUMBER.match(s, i)
            assert m is not None
            i = m.end()
        elif c.isalpha() or c in "_:":
            m = _IDENT.match(s, i)
            assert m is not None
            word = m.group(0)
            i = m.end()
            j = i
            while j < n and s[j].isspace():
                j += 1
            if word in GROUPING:
                if j < n and s[j] == "(":
                    i = _skip_brackets(s, j, "(", ")")
            elif word == "offset":
                d = _DURATION.match(s, i)
                i = d.end() if d else i
            elif word in KEYWORDS or word.lower() in NUMBERS:
                pass
            elif j < n and s[j] == "(":
                pass  # a function call
            else:
                sel = Selector(word)
                if j < n and s[j] == "{":
                    end = _skip_brackets(s, j, "{", "}")
                    sel.matchers = _matchers(s[j + 1 : end - 1])
                    i = end
                out.append(sel)
        else:
            i += 1
    return out


def metric_names(expr: str) -> set[str]:
    return {sel.name for sel in selectors(expr) if sel.name}


_RATE_ARG = re.compile(r"\b(rate|irate|increase|resets)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
_GAUGE_ARG = re.compile(r"\b(deriv|delta|idelta|predict_linear)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def counter_arguments(expr: str) -> set[str]:
    """Metric names given straight to rate(), irate(), increase() or resets()."""
    return {m.group(2) for m in _RATE_ARG.finditer(expr)}


def gauge_arguments(expr: str) -> set[str]:
    """Metric names given straight to deriv(), delta(), idelta() or predict_linear()."""
    return {m.group(2) for m in _GAUGE_ARG.finditer(expr)}


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def template_query(query: str) -> tuple[str | None, str | None]:
    """(selector expression, label) of a Grafana ``label_values(expr, label)`` query."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        return query, None
    return m.group(1), m.group(2)
