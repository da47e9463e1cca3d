"""The configuration reference, generated from the config model (``docs/hub-config.md``)."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from waferscope.hub.config import HubConfig, WebhookConfig


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in get_args(annotation) if a is not type(None)]
        optional = " (optional)" if type(None) in get_args(annotation) else ""
        return " or ".join(names) + optional
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        k, v = get_args(annotation)
        return f"table {_type_name(k)} → {_type_name(v)}"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _text(doc: str | None) -> str:
    return (doc or "").replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "empty"
    if isinstance(field.default, BaseModel):
        return "(section)"
    value = str(field.default) if isinstance(field.default, Path) else field.default
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows = []
    subsections: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            subsections.append((f"{prefix}{name}", typing.cast(type[BaseModel], field.annotation)))
            continue
        rows.append(
            f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{_text(field.description)} |"
        )
    title = prefix.rstrip(".")
    out.append(f"\n### `[{title}]`\n" if title else "\n### Top level\n")
    if model.__doc__ and title:
        out.append(" ".join(model.__doc__.split()) + "\n")
    if rows:
        out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        out.extend(rows)
    for sub_prefix, sub in subsections:
        _section(sub, sub_prefix + ".", out)


def reference_markdown() -> str:
    out = [
        "# Hub configuration reference",
        "",
        "Generated from `waferscope.hub.config` by `waferscope hub config-reference`; do not edit "
        "by hand. The file is TOML (`hub.toml`) or YAML (`hub.yaml`); unknown keys are errors and "
        "`waferscope hub validate-config` names the line of every bad value. Every key can be "
        "overridden from the environment with `WAFERSCOPE_HUB__<SECTION>__<KEY>` (levels joined "
        "by double underscores, list items by index, values read as YAML scalars), applied at "
        "load. Relative paths are taken from the configuration file's folder.",
        "",
        "A configuration of three lines is enough:",
        "",
        "```toml",
        'data_dir = "/var/lib/waferscope-hub"',
        "[mqtt]",
        'host = "broker.fab3.example"',
        "```",
    ]
    _section(HubConfig, "", out)
    out.append("\n### `[[notify.webhooks]]` (each entry)\n")
    out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
    for name, field in WebhookConfig.model_fields.items():
        out.append(
            f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{_text(field.description)} |"
        )
    return "\n".join(out) + "\n"
