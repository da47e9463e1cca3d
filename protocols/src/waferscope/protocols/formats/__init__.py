"""Format registry: content detection and reading of every supported wafer-map format.

Adding a format is one module (a class with ``name``, ``title``, ``sniff`` and ``read``) plus one
line in :data:`BUILTIN_FORMATS`. Third-party packages may add formats through the
``waferscope.formats`` entry-point group (``name = "package.module:ClassName"``).

Detection runs the readers' ``sniff`` in the order listed: specific binary signatures first,
heuristic ones (TSK, CSV) last.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from functools import cache
from importlib.metadata import entry_points
from typing import cast

from waferscope.protocols.errors import FormatError, UnknownFormatError
from waferscope.protocols.formats.base import (
    ReadOptions,
    RetestPolicy,
    Source,
    WaferFormat,
    WaferWriter,
)
from waferscope.protocols.wafermap import WaferMap

__all__ = [
    "BUILTIN_FORMATS",
    "ReadOptions",
    "RetestPolicy",
    "Source",
    "WaferFormat",
    "WaferWriter",
    "detect",
    "get_format",
    "get_writer",
    "list_formats",
    "read_maps",
]

# One line per format, in detection order.
BUILTIN_FORMATS: tuple[str, ...] = (
    "waferscope.protocols.formats.datasets.reader:Wm811kFormat",
    "waferscope.protocols.formats.datasets.reader:MixedWm38Format",
    "waferscope.protocols.formats.stdf.reader:StdfFormat",
    "waferscope.protocols.formats.e142.reader:E142Format",
    "waferscope.protocols.formats.klarf.reader:KlarfFormat",
    "waferscope.protocols.formats.tsk.reader:TskFormat",
    "waferscope.protocols.formats.csv.reader:CsvFormat",
)


def _load(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)()


@cache
def list_formats() -> tuple[WaferFormat, ...]:
    """Every registered reader, in detection order."""
    found: list[WaferFormat] = [cast(WaferFormat, _load(s)) for s in BUILTIN_FORMATS]
    for ep in entry_points(group="waferscope.formats"):
        found.append(cast(WaferFormat, ep.load()()))
    return tuple(found)


def get_format(name: str) -> WaferFormat:
    for fmt in list_formats():
        if fmt.name == name:
            return fmt
    known = ", ".join(f.name for f in list_formats())
    raise UnknownFormatError(f"no format named {name!r} (known: {known})")


def get_writer(name: str) -> WaferWriter:
    fmt = get_format(name)
    if not isinstance(fmt, WaferWriter) or not hasattr(fmt, "write"):
        raise UnknownFormatError(f"format {name!r} has no writer")
    return fmt


def detect(source: Source) -> WaferFormat:
    """The first reader whose ``sniff`` accepts the source's first bytes."""
    if not source.head:
        raise UnknownFormatError("the input is empty", source=source.name, offset=0)
    for fmt in list_formats():
        if fmt.sniff(source.head):
            return fmt
    raise UnknownFormatError(
        f"content matches no known wafer-map format ({', '.join(f.name for f in list_formats())})",
        source=source.name,
        offset=0,
    )


def read_maps(
    path: str | os.PathLike[str] | Source,
    *,
    format: str | None = None,
    options: ReadOptions | None = None,
) -> Iterator[WaferMap]:
    """Open, detect (unless ``format`` is given) and yield every wafer of one input.

    Errors are :class:`FormatError` naming the source and place; anything else a reader lets
    slip is turned into one too (and is a bug to fix in that reader).
    """
    opts = options or ReadOptions()
    source = path if isinstance(path, Source) else Source.open(path)
    try:
        fmt = get_format(format) if format else detect(source)
        try:
            yield from fmt.read(source, opts)
        except FormatError:
            raise
        except (ValueError, KeyError, IndexError, OverflowError, UnicodeError) as exc:
            raise FormatError(
                f"unreadable content ({type(exc).__name__}: {exc})",
                format=fmt.name,
                source=source.name,
            ) from exc
    finally:
        if not isinstance(path, Source):
            source.close()
