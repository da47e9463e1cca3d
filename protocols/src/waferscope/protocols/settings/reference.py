"""The Markdown reference of a configuration model: one table per section, from the fields."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

TABLE_HEAD = "| key | type | default | meaning |\n| --- | --- | --- | --- |"


def type_name(annotation: Any) -> str:
    """How a field's type reads in the reference."""
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in get_args(annotation) if a is not type(None)]
        optional = " (optional)" if type(None) in get_args(annotation) else ""
        return " or ".join(names) + optional
    if origin is typing.Annotated:
        return type_name(get_args(annotation)[0])
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        k, v = get_args(annotation)
        return f"table {type_name(k)} → {type_name(v)}"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _json(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)


def text(doc: str | None) -> str:
    """A description made safe for one table cell."""
    return (doc or "").replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def default_text(field: FieldInfo) -> str:
    """How a field's default reads in the reference."""
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} entries (see below)"
        return f"`{_json(value)}`"
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "empty"
    if isinstance(field.default, BaseModel):
        return "(section)"
    return f"`{_json(field.default)}`"


def field_rows(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    """One table row per field of ``model`` that is not a section of its own."""
    return [
        f"| `{name}` | {type_name(field.annotation)} | {default_text(field)} | "
        f"{text(field.description)} |"
        for name, field in model.model_fields.items()
        if name not in skip and not _is_section(field.annotation)
    ]


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def section_markdown(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    """Append the tables of ``model`` and of every section under it to ``out``."""
    title = prefix.rstrip(".")
    out.append(f"\n### `[{title}]`\n" if title else "\n### Top level\n")
    if model.__doc__ and title:
        out.append(" ".join(model.__doc__.split()) + "\n")
    rows = field_rows(model)
    if rows:
        out.append(TABLE_HEAD)
        out.extend(rows)
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            sub = typing.cast(type[BaseModel], field.annotation)
            section_markdown(sub, f"{prefix}{name}.", out)
