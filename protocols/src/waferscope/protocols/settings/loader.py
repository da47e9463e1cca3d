"""Reading a configuration: TOML or YAML, environment overrides, errors with line numbers.

Environment overrides: a variable ``<PREFIX><SECTION>__<FIELD>`` (double underscores between
levels, any case; the prefix is the part's, e.g. ``WAFERSCOPE_EDGE__``) sets that field before
validation; its value is read as a YAML scalar, so ``8883`` is a number, ``true`` a boolean and
``[a, b]`` a list. List items are addressed by index; the index one past the end adds an item.

Every problem is reported as ``<file>:<line>: <field>: <reason>`` (or the variable's name for an
override), all of them at once, in a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from waferscope.protocols.errors import WaferscopeError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a configuration cannot be used, with its place."""

    where: str  # "edge.toml:12", "WAFERSCOPE_EDGE__MQTT__PORT", "edge.toml"
    field: str  # "mqtt.port"
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.field}: {self.reason}"
            if self.field
            else f"{self.where}: {self.reason}"
        )


class ConfigError(WaferscopeError):
    """The configuration cannot be used; ``problems`` lists every reason with its place."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class LoadedConfig(Generic[ConfigT]):
    """A validated configuration and where it came from."""

    config: ConfigT  # paths resolved against the file's folder
    source: Path | None  # None: no file, defaults plus environment overrides
    overrides: tuple[str, ...]  # names of the environment variables applied


# --------------------------------------------------------------------------- file parsing
def _parse_yaml(path: Path, text: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
        node = yaml.compose(text) if text.strip() else None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(
            [Problem(f"{path}:{line}", "", f"not valid YAML: {exc.problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), "", f"not valid YAML: {exc}")]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([Problem(str(path), "", "the top level must be a mapping")])
    index: dict[KeyPath, int] = {}
    if node is not None:
        _index_yaml(node, (), index)
    return doc, index


def _parse_text(path: Path, text: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _parse_yaml(path, text)
    if suffix != ".toml":
        raise ConfigError(
            [Problem(str(path), "", "unknown config type: use a .toml, .yaml or .yml file")]
        )
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError([Problem(where, "", f"not valid TOML: {exc}")]) from None
    return doc, _index_toml(text)


def _index_yaml(node: yaml.Node, path: KeyPath, index: dict[KeyPath, int]) -> None:
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            index[(*path, name)] = key.start_mark.line + 1
            _index_yaml(value, (*path, name), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[(*path, i)] = item.start_mark.line + 1
            _index_yaml(item, (*path, i), index)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_key(key: str) -> list[str]:
    return [
        part.strip().strip("\"'")
        for part in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", key)
    ]


def _index_toml(text: str) -> dict[KeyPath, int]:
    """Line of every table header and key (a light scanner: tomllib keeps no positions)."""
    index: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[tuple[str, ...], int] = {}
    in_multiline: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            names = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                n = array_counts.get(names, -1) + 1
                array_counts[names] = n
                table = (*names, n)
            else:
                table = names
            for depth in range(1, len(table) + 1):
                index.setdefault(table[:depth], lineno)
            continue
        key = _KEY.match(line)
        if key:
            index.setdefault((*table, *_split_key(key.group(1))), lineno)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return index


def _locate(index: dict[KeyPath, int], loc: tuple[str | int, ...]) -> int | None:
    """Line of the deepest part of ``loc`` found in the file."""
    matched: KeyPath = ()
    for segment in loc:
        candidate = (*matched, segment)
        if candidate in index:
            matched = candidate
    return index.get(matched) if matched else None


# --------------------------------------------------------------------------- environment
def _env_overrides(environ: Mapping[str, str], prefix: str) -> list[tuple[str, KeyPath, Any]]:
    found = []
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(prefix):
            continue
        parts = [p.lower() for p in name[len(prefix) :].split("__") if p]
        if not parts:
            continue
        path: KeyPath = tuple(int(p) if p.isdigit() else p for p in parts)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict):
            value = raw
        found.append((name, path, value))
    return found


def _apply(doc: dict[str, Any], path: KeyPath, value: Any, name: str) -> None:
    dotted = ".".join(map(str, path))

    node: Any = doc
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not isinstance(part, int) or part > len(node):
                raise ConfigError([Problem(name, dotted, "no such list item")])
            if part == len(node):  # the next item of a list: a new entry
                node.append([] if isinstance(path[i + 1], int) else {})
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError([Problem(name, dotted, "not a section")])
        key = str(part)
        if key not in node or node[key] is None:
            node[key] = [] if isinstance(path[i + 1], int) else {}
        node = node[key]
    last = path[-1]
    if isinstance(node, list) and isinstance(last, int) and last <= len(node):
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[str(last)] = value
    else:
        raise ConfigError([Problem(name, dotted, "cannot be set here")])


# --------------------------------------------------------------------------- load
@dataclass(frozen=True, slots=True)
class ConfigLoader(Generic[ConfigT]):
    """Loads one part's root model; ``hidden_loc`` are location parts left out of field names
    (the tags of discriminated unions pydantic puts into error locations)."""

    model: type[ConfigT]
    env_prefix: str
    hidden_loc: Collection[str] = ()

    def load(
        self, path: Path | None, environ: Mapping[str, str] | None = None
    ) -> LoadedConfig[ConfigT]:
        """Read, override from the environment, validate and resolve one configuration.

        ``path`` None means no file: defaults plus environment overrides.
        """
        env = os.environ if environ is None else environ
        doc: dict[str, Any] = {}
        index: dict[KeyPath, int] = {}
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                problem = Problem(str(path), "", f"cannot read ({exc.strerror})")
                raise ConfigError([problem]) from None
            doc, index = _parse_text(path, text)
        overrides = _env_overrides(env, self.env_prefix)
        origin: dict[KeyPath, str] = {}
        for name, key_path, value in overrides:
            _apply(doc, key_path, value, name)
            origin[key_path] = name
        try:
            config = self.model.model_validate(doc)
        except ValidationError as exc:
            raise ConfigError(self._problems(exc, path, index, origin)) from None
        base = path.resolve().parent if path is not None else Path.cwd()
        resolve = getattr(config, "resolve", None)
        return LoadedConfig(
            config=resolve(base) if resolve is not None else config,
            source=path,
            overrides=tuple(name for name, _, _ in overrides),
        )

    def _problems(
        self,
        exc: ValidationError,
        path: Path | None,
        index: dict[KeyPath, int],
        origin: dict[KeyPath, str],
    ) -> list[Problem]:
        problems = []
        shown_path = str(path) if path is not None else "<defaults>"
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc if p not in self.hidden_loc)
            env_name = next((name for key, name in origin.items() if loc[: len(key)] == key), None)
            if env_name:
                where = env_name
            else:
                line = _locate(index, loc)
                where = f"{shown_path}:{line}" if line else shown_path
            reason = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown key (not a setting of this section)"
            elif err["type"] == "missing":
                reason = "required, but missing"
            elif "input" in err and not isinstance(err["input"], dict | list):
                shown = repr(err["input"])
                if len(shown) <= 60:
                    reason = f"{reason} (got {shown})"
            problems.append(Problem(where, field, reason))
        return problems
