"""Safe XML parsing for the E142 reader: a small element tree that remembers line numbers.

``defusedxml`` (a maintained hardening of the standard expat parser) refuses DTDs, entity
declarations and external references, which rules out entity-expansion bombs and any file or
network access. On top of that the element count is capped and the text of elements the reader
never looks at is dropped, so memory stays proportional to the map. Every failure becomes a
:class:`FormatError` (or :class:`TruncatedError`) naming the line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Final
from xml.parsers.expat import errors as expat_errors

from defusedxml.common import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from waferscope.protocols.errors import FormatError, TruncatedError

__all__ = ["Node", "build_tree"]

_TRUNCATION_CODES: Final = frozenset(
    expat_errors.codes[m]
    for m in (
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)


@dataclass(eq=False, slots=True)
class Node:
    """One element: local name, attributes (local names), line, children, kept text."""

    name: str
    attrib: dict[str, str]
    line: int
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)

    def children_named(self, name: str) -> list[Node]:
        return [c for c in self.children if c.name == name]

    def grandchildren(self, parent: str, name: str) -> list[Node]:
        return [n for p in self.children_named(parent) for n in p.children_named(name)]

    def first_descendant(self, name: str) -> Node | None:
        queue = list(self.children)
        while queue:
            node = queue.pop(0)
            if node.name == name:
                return node
            queue.extend(node.children)
        return None


class _TooManyElementsError(Exception):
    pass


class _TreeTarget:
    """ElementTree parser target that records each element's line and drops unneeded text."""

    def __init__(self, max_elements: int, keep_text: frozenset[str]) -> None:
        self.keep_text = keep_text
        self.expat: Any = None
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.count = 0
        self.max_elements = max_elements

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.count += 1
        if self.count > self.max_elements:
            raise _TooManyElementsError
        node = Node(
            tag.rpartition("}")[2],
            {k.rpartition("}")[2]: v for k, v in attrib.items()},
            int(self.expat.CurrentLineNumber),
        )
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.stack and self.stack[-1].name in self.keep_text:
            self.stack[-1].parts.append(text)

    def close(self) -> Node | None:
        return self.root


def build_tree(
    data: bytes,
    *,
    source: str,
    format_name: str,
    truncated: bool,
    max_elements: int,
    keep_text: frozenset[str],
) -> Node:
    """Parse XML safely into :class:`Node` elements; every failure is a FormatError.

    Only elements named in ``keep_text`` keep their character data.
    """
    target = _TreeTarget(max_elements, keep_text)
    parser = DefusedXMLParser(
        target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    expat = parser.parser
    target.expat = expat

    def error(reason: str, line: int | None, cls: type[FormatError] = FormatError) -> FormatError:
        return cls(reason, format=format_name, source=source, line=line)

    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        raise error(
            f"forbidden XML construct ({type(exc).__name__}: DTDs, entities and external "
            "references are refused)",
            expat.CurrentLineNumber,
        ) from None
    except _TooManyElementsError:
        raise error(f"more than {max_elements:,} XML elements", expat.CurrentLineNumber) from None
    except ET.ParseError as exc:
        line = exc.position[0]
        message = str(exc).split(":", 1)[0]
        if truncated or exc.code in _TRUNCATION_CODES:
            raise error(f"XML ends early ({message})", line, TruncatedError) from None
        raise error(f"not well-formed XML ({message})", line) from None
    except (ValueError, LookupError, UnicodeError) as exc:  # unknown or broken encodings
        raise error(f"unreadable XML ({exc})", expat.CurrentLineNumber) from None
    if not isinstance(root, Node):
        raise error("no XML element found", 1, TruncatedError)
    if truncated:
        raise error("the compressed stream ends early", expat.CurrentLineNumber, TruncatedError)
    return root
