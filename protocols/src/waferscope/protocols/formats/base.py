"""What a format reader is, how sources are opened, and the options every reader honours.

A reader is detected *by content*: :meth:`WaferFormat.sniff` sees the first bytes of the
(decompressed) stream. Compression (gzip, bzip2, xz) is recognised by magic bytes and undone
here, once, for every format.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, ClassVar, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import DecompressionLimitError, FormatError
from waferscope.protocols.wafermap import WaferMap

HEAD_SIZE = 8192
# Decompression-bomb limits for gzip / bzip2 / xz inputs: a stream may expand to at most
# MAX_DECOMPRESSED_BYTES, and past RATIO_FLOOR_BYTES to at most MAX_RATIO times the compressed
# bytes read so far (real tester files compress 3-30x; a bomb of zeros 1,000x to 1,000,000x).
# Source(..., max_decompressed=, max_ratio=) changes them per input.
MAX_DECOMPRESSED_BYTES = 2 * 1024 * 1024 * 1024
MAX_RATIO = 200.0
RATIO_FLOOR_BYTES = 64 * 1024 * 1024

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class RetestPolicy(StrEnum):
    """What to keep when one die (x, y) is tested more than once on a wafer."""

    LAST = "last"  # the last result wins (the usual meaning of a retest)
    FIRST = "first"  # the first result wins
    BEST = "best"  # a pass anywhere wins; otherwise the last result
    ALL = "all"  # keep every result (the quality report then lists duplicates)


def select_retests(
    x: npt.ArrayLike, y: npt.ArrayLike, passed: npt.ArrayLike, policy: RetestPolicy
) -> tuple[npt.NDArray[np.intp], int, int]:
    """Apply a retest policy to die results listed in test (file) order.

    Returns the rows to keep (in their original order), how many dies were tested more than
    once, and how many extra results there were.
    """
    xs = np.asarray(x, dtype=np.int64)
    ys = np.asarray(y, dtype=np.int64)
    ok = np.asarray(passed, dtype=np.bool_)
    n = int(xs.shape[0])
    key = (xs + 2**31) * 2**32 + (ys + 2**31)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if n else order
    sizes = np.diff(np.r_[starts, n])
    retested, extra = int(np.count_nonzero(sizes > 1)), n - int(starts.shape[0])
    if extra == 0 or policy is RetestPolicy.ALL:
        return np.arange(n, dtype=np.intp), retested, extra
    ends = np.r_[starts[1:], n] - 1
    if policy is RetestPolicy.FIRST:
        keep = order[starts]
    elif policy is RetestPolicy.LAST:
        keep = order[ends]
    else:  # BEST: the last passing result of a die if it ever passed, else its last result
        keep = np.lexsort((np.arange(n), ok, key))[ends]
    keep.sort()
    return keep.astype(np.intp), retested, extra


@dataclass(frozen=True, slots=True)
class ReadOptions:
    retest: RetestPolicy = RetestPolicy.LAST
    max_dies: int = 20_000_000  # refuse absurd inputs instead of exhausting memory
    max_text_bytes: int = 256 * 1024 * 1024  # text formats are read whole; cap them


def _open_codec(codec: str, raw: BinaryIO) -> io.BufferedIOBase:
    """A decompressing reader over ``raw`` (the caller owns and closes it)."""
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    return lzma.LZMAFile(raw, mode="rb")


class _DecompressingReader(io.RawIOBase):
    """Wraps a decompressor; a stream cut short reads as EOF and sets ``truncated``."""

    def __init__(
        self,
        inner: io.BufferedIOBase,
        raw: BinaryIO,
        name: str,
        codec: str,
        limits: tuple[int, float],
    ) -> None:
        self._inner = inner
        self._raw = raw
        self._name = name
        self._codec = codec
        self._max_bytes, self._max_ratio = limits
        self.truncated = False
        self.consumed = 0

    def _check_limits(self) -> None:
        if self.consumed > self._max_bytes:
            raise DecompressionLimitError(
                f"expands past the {self._max_bytes:,}-byte limit for decompressed input",
                format=self._codec,
                source=self._name,
                offset=self._max_bytes,
            )
        if self.consumed > RATIO_FLOOR_BYTES:
            packed = max(1, self._raw.tell())
            if self.consumed / packed > self._max_ratio:
                raise DecompressionLimitError(
                    f"expands {self.consumed / packed:,.0f} times ({self.consumed:,} bytes from "
                    f"{packed:,}), past the {self._max_ratio:,.0f}x limit for compressed input",
                    format=self._codec,
                    source=self._name,
                    offset=self.consumed,
                )

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read1(len(b))  # read1: keep what came before a cut
        except EOFError:
            self.truncated = True
            return 0
        except (OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
            raise FormatError(
                f"corrupt compressed data ({exc})",
                format=self._codec,
                source=self._name,
                offset=self.consumed,
            ) from None
        n = len(data)
        b[:n] = data
        self.consumed += n
        self._check_limits()
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


class Source:
    """An opened input: a binary stream (decompressed) plus its name and first bytes.

    ``stream`` is positioned at 0. ``truncated`` becomes true when a compressed container ended
    early (readers treat that as the stream ending mid-structure).
    """

    def __init__(
        self,
        name: str,
        raw: BinaryIO,
        *,
        path: Path | None = None,
        max_decompressed: int = MAX_DECOMPRESSED_BYTES,
        max_ratio: float = MAX_RATIO,
    ) -> None:
        self.name = name
        self.path = path
        self._raw = raw
        self._limits = (max_decompressed, max_ratio)
        magic = raw.read(6)
        raw.seek(0)
        self.compression: str | None = None
        self._decomp: _DecompressingReader | None = None
        inner: BinaryIO = raw
        for prefix, codec in _MAGIC:
            if magic.startswith(prefix):
                self.compression = codec
                self._decomp = self._decompressor(codec)
                inner = cast(BinaryIO, io.BufferedReader(self._decomp, buffer_size=1 << 20))
                break
        self.stream: BinaryIO = inner
        self.head = self._peek_head()

    def _peek_head(self) -> bytes:
        if self._decomp is None:
            head = self._raw.read(HEAD_SIZE)
            self._raw.seek(0)
            return head
        # Decompressed streams cannot seek back cheaply: read the head and re-open.
        head = self.stream.read(HEAD_SIZE)
        self._reopen()
        return head

    def _reopen(self) -> None:
        self._raw.seek(0)
        assert self.compression is not None
        self._decomp = self._decompressor(self.compression)
        self.stream = cast(BinaryIO, io.BufferedReader(self._decomp, buffer_size=1 << 20))

    def _decompressor(self, codec: str) -> _DecompressingReader:
        return _DecompressingReader(
            _open_codec(codec, self._raw), self._raw, self.name, codec, self._limits
        )

    @property
    def truncated(self) -> bool:
        return self._decomp is not None and self._decomp.truncated

    def read_all(self, limit: int) -> bytes:
        """The whole (decompressed) content, refusing more than ``limit`` bytes."""
        data = self.stream.read(limit + 1)
        if len(data) > limit:
            raise FormatError(
                f"input is larger than the {limit:,}-byte limit for this format",
                source=self.name,
                offset=limit,
            )
        return data

    def close(self) -> None:
        self.stream.close()
        self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Source:
        p = Path(path)
        try:
            raw = p.open("rb")
        except OSError as exc:
            raise FormatError(f"cannot open: {exc.strerror or exc}", source=str(p)) from None
        try:
            return cls(str(p), raw, path=p)
        except BaseException:
            raw.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> Source:
        return cls(name, io.BytesIO(data))


@runtime_checkable
class WaferFormat(Protocol):
    """A reader for one file format. Register it with one line in ``formats/__init__.py``."""

    name: ClassVar[str]  # short id used on the CLI and in provenance, e.g. "stdf"
    title: ClassVar[str]  # one line for `waferscope formats`

    def sniff(self, head: bytes) -> bool:
        """True when the first bytes of the decompressed stream look like this format."""

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        """Yield every wafer in the source; raise FormatError (naming the place) on bad input."""


@runtime_checkable
class WaferWriter(Protocol):
    """A writer for a format (optional next to a reader)."""

    name: ClassVar[str]

    def write(self, maps: list[WaferMap], stream: BinaryIO) -> None:
        """Write the maps to the binary stream."""
