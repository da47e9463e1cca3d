"""Tokens of a KLARF file (both the 1.1/1.2 statement syntax and the 1.8 record syntax).

KLARF text is made of bare words/numbers, double-quoted strings, the statement terminator
``;`` and, in version 1.8, the punctuation ``{ } ,``. Quoted strings keep their quotes in the
token (so that a quoted ``";"`` is never a terminator); :func:`unquote` removes them. The text
is decoded as Latin-1 (never fails); quoted strings are re-read as UTF-8 where they hold
non-ASCII bytes. Tokens are found line by line with one regular expression, so a token's line
is known from the per-line token counts without keeping an offset per token.

Hostile input is refused up front with a :class:`FormatError` naming the line: control bytes
(binary content), lines longer than :data:`MAX_LINE_CHARS`, tokens longer than
:data:`MAX_TOKEN_CHARS` and unterminated quoted strings.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Final, NoReturn

import numpy as np

from waferscope.protocols.errors import FormatError

FORMAT_NAME: Final = "klarf"
MAX_LINE_CHARS: Final = 4 * 1024 * 1024
MAX_TOKEN_CHARS: Final = 64 * 1024
INT32_MAX: Final = 2**31 - 1  # die indexes must fit the WaferMap's int32 columns

_TOKEN_RE: Final = re.compile(r'"[^"\n]*"|[{};,]|[^\s{};,"]+|"')
_SPECIAL_RE: Final = re.compile(r'["{};,]')  # lines without these split on whitespace
# Control bytes other than tab, LF, VT, FF, CR and the DOS end-of-file mark (0x1A).
_ALLOWED_CONTROLS: Final = np.array([9, 10, 11, 12, 13, 26], np.uint8)


class Tokens:
    """The token values of one text, with the line of each token for error messages."""

    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        if b"\n" not in data and b"\r" in data:  # classic Mac line ends
            data = data.replace(b"\r", b"\n")
        raw = np.frombuffer(data, np.uint8)
        self._newlines = np.flatnonzero(raw == 10)
        bad = (raw < 32) & ~np.isin(raw, _ALLOWED_CONTROLS)
        if bad.any():
            offset = int(np.argmax(bad))
            self.fail(f"binary content (byte 0x{raw[offset]:02x}) in a text format", offset)
        bounds = np.concatenate(([-1], self._newlines, [raw.size]))
        lengths = np.diff(bounds) - 1
        if lengths.size and int(lengths.max()) > MAX_LINE_CHARS:
            longest = int(np.argmax(lengths))
            self.fail(
                f"line of {int(lengths[longest]):,} characters is longer than the "
                f"{MAX_LINE_CHARS:,} a KLARF line may have",
                int(bounds[longest]) + 1,
            )
        text = data.decode("latin-1")
        if text.startswith("\xef\xbb\xbf"):  # UTF-8 byte-order mark
            text = text[3:]
        findall, special = _TOKEN_RE.findall, _SPECIAL_RE.search
        per_line = [findall(ln) if special(ln) else ln.split() for ln in text.split("\n")]
        self._line_ends = np.cumsum(np.fromiter(map(len, per_line), np.int64, len(per_line)))
        self.values: list[str] = list(chain.from_iterable(per_line))
        if '"' in self.values:
            self.fail_at("unterminated quoted string", self.values.index('"'))
        if self.values and max(map(len, self.values)) > MAX_TOKEN_CHARS:
            index = next(i for i, v in enumerate(self.values) if len(v) > MAX_TOKEN_CHARS)
            self.fail_at(f"a value of {len(self.values[index]):,} characters is too long", index)

    def __len__(self) -> int:
        return len(self.values)

    def line_of(self, offset: int) -> int:
        """1-based line number of a character offset."""
        return int(np.searchsorted(self._newlines, offset, side="left")) + 1

    def line_at(self, index: int) -> int:
        """1-based line of token ``index`` (the last line when ``index`` is past the end)."""
        line = int(np.searchsorted(self._line_ends, index, side="right")) + 1
        return min(line, int(self._line_ends.size))

    def fail(self, reason: str, offset: int) -> NoReturn:
        raise FormatError(reason, format=FORMAT_NAME, source=self.source, line=self.line_of(offset))

    def fail_at(self, reason: str, index: int, error: type[FormatError] = FormatError) -> NoReturn:
        raise error(reason, format=FORMAT_NAME, source=self.source, line=self.line_at(index))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Millions of token strings and row lists otherwise trigger collections that cost as much
    as the parsing itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def unquote(token: str) -> str:
    """A token's value: quotes removed, non-ASCII bytes of quoted strings read as UTF-8."""
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        token = token[1:-1]
        if not token.isascii():
            token = token.encode("latin-1").decode("utf-8", errors="replace")
    return token


def is_word(token: str) -> bool:
    """A bare keyword (record, field or list name): a letter, then letters/digits/_."""
    return token[:1].isalpha() and token.replace("_", "").isalnum() and token.isascii()
