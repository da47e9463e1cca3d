"""The configuration reference, generated from the config model (``docs/edge-config.md``)."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from waferscope.edge.config import EdgeConfig

RULE_KINDS = (
    "PatternRule",
    "PatternRepeatRule",
    "FailDensityRule",
    "LowConfidenceStreakRule",
    "ParseFailureRule",
)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation) if a is not type(None)) + (
            " (optional)" if type(None) in get_args(annotation) else ""
        )
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        k, v = get_args(annotation)
        return f"table {_type_name(k)} → {_type_name(v)}"
    return getattr(annotation, "__name__", str(annotation))


def _toml(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)


def _text(doc: str | None) -> str:
    return (doc or "").replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} rules (see below)"
        return f"`{_toml(value)}`"
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "empty"
    return f"`{_toml(field.default)}`"


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows = []
    subsections = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            subsections.append((f"{prefix}{name}", annotation))
            continue
        rows.append(
            f"| `{name}` | {_type_name(annotation)} | {_default(field)} | "
            f"{_text(field.description)} |"
        )
    title = prefix.rstrip(".") or "top level"
    out.append(f"\n### `[{title}]`\n" if prefix else "\n### Top level\n")
    if model.__doc__:
        out.append(" ".join(model.__doc__.split()) + "\n")
    if rows:
        out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        out.extend(rows)
    for sub_prefix, sub in subsections:
        _section(sub, sub_prefix + ".", out)


def reference_markdown() -> str:
    from waferscope.edge import config as cfg

    out = [
        "# Edge agent configuration reference",
        "",
        "Generated from `waferscope.edge.config` by `waferscope edge config-reference`; do not "
        "edit by hand. Unknown keys are errors. Every key can be overridden from the environment "
        "with `WAFERSCOPE_EDGE__<SECTION>__<KEY>` (levels joined by double underscores, list "
        "items by index), applied at load.",
    ]
    _section(EdgeConfig, "", out)
    out.append("\n## Alert rules (`[[alerts.rules]]`)\n")
    out.append(
        "Every rule has `id` (required, unique) and `severity` "
        "(`info`, `warning`, `error`, `critical`; default `warning`), plus:"
    )
    for kind in RULE_KINDS:
        model = getattr(cfg, kind)
        tag = get_args(model.model_fields["kind"].annotation)[0]
        out.append(f'\n### kind = "{tag}"\n')
        out.append(" ".join((model.__doc__ or "").split()) + "\n")
        rows = [
            f"| `{name}` | {_type_name(f.annotation)} | {_default(f)} | {_text(f.description)} |"
            for name, f in model.model_fields.items()
            if name not in ("kind", "id", "severity")
        ]
        if rows:
            out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
            out.extend(rows)
    return "\n".join(out) + "\n"
