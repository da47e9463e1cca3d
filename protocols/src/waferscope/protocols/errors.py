"""Typed errors raised across the waferscope contracts.

Every error a user can provoke with bad input is a :class:`WaferscopeError`. Its ``str()`` is one
readable line that names *what* went wrong and *where* (file, byte offset or line, record), so the
CLI can print it to stderr as is and exit non-zero without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class WaferscopeError(Exception):
    """Base class of every error waferscope raises on purpose."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a source something was found. Any field may be unknown (``None``)."""

    source: str | None = None
    offset: int | None = None  # byte offset in the (decompressed) stream
    line: int | None = None  # 1-based line number for text formats
    record: str | None = None  # e.g. "PRR #1,204" or "row 17"

    def __str__(self) -> str:
        parts: list[str] = []
        if self.source:
            parts.append(self.source)
        where: list[str] = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        if self.record:
            where.append(self.record)
        if where:
            parts.append(", ".join(where))
        return ": ".join(parts) if parts else "<unknown source>"


class FormatError(WaferscopeError):
    """A source could not be read as the format it claims (or was detected) to be.

    ``reason`` is the human sentence; ``location`` says where; ``format`` names the reader.
    """

    def __init__(
        self,
        reason: str,
        *,
        format: str | None = None,
        source: str | None = None,
        offset: int | None = None,
        line: int | None = None,
        record: str | None = None,
    ) -> None:
        self.reason = reason
        self.format = format
        self.location = Location(source=source, offset=offset, line=line, record=record)
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.format} " if self.format else ""
        return f"{self.location}: {prefix}{self.reason}"

    def __reduce__(self) -> tuple[object, ...]:  # keep picklable across process pools
        return (
            _rebuild_format_error,
            (
                type(self),
                self.reason,
                self.format,
                self.location.source,
                self.location.offset,
                self.location.line,
                self.location.record,
            ),
        )


def _rebuild_format_error(
    cls: type[FormatError],
    reason: str,
    fmt: str | None,
    source: str | None,
    offset: int | None,
    line: int | None,
    record: str | None,
) -> FormatError:
    return cls(reason, format=fmt, source=source, offset=offset, line=line, record=record)


class UnknownFormatError(FormatError):
    """No registered reader recognises the content."""


class TruncatedError(FormatError):
    """The source ends in the middle of a record or structure."""


class DecompressionLimitError(FormatError):
    """A compressed input expands past the size or ratio limit (a decompression bomb)."""


class WaferMapError(WaferscopeError, ValueError):
    """A WaferMap (or a part of it) was constructed from inconsistent values."""


class EncodingError(WaferscopeError, ValueError):
    """A model-input encoding was asked for with an unknown version or bad parameters."""


class TopicError(WaferscopeError, ValueError):
    """An MQTT topic could not be built or parsed (bad id, wildcard in an id, wrong shape)."""


class SimulatorError(WaferscopeError, ValueError):
    """The tester simulator cannot do what it was asked: an unknown output format, a source that
    is missing or holds no wafer map, a selection without wafers, an output folder it cannot
    write into. ``where`` names the file, folder or option concerned; ``str()`` is one line.
    (A source whose content is corrupt raises the reader's :class:`FormatError` instead.)
    """

    def __init__(self, reason: str, *, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)

    def __reduce__(self) -> tuple[object, ...]:  # keep picklable across process pools
        return (_rebuild_simulator_error, (type(self), self.reason, self.where))


def _rebuild_simulator_error(
    cls: type[SimulatorError], reason: str, where: str | None
) -> SimulatorError:
    return cls(reason, where=where)
