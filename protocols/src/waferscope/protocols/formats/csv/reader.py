"""Die lists as delimited text (CSV and relatives): reader and writer.

The schema, the header aliases and the metadata comments are documented for users in
``docs/formats/csv.md``; in short:

* optional leading ``# key: value`` comment lines carry metadata (lot, wafer, tester, program,
  orientation, labels, pass_bins, ``extra.<key>``, ...); the writer emits them;
* the first other non-blank line is the header. Its delimiter is sniffed (tab, comma, semicolon,
  pipe, else runs of blanks) and its names are matched case-insensitively against aliases
  (``x``/``col``/``die_x``..., ``y``/``row``/``die_y``..., ``bin``/``hbin``/``hard_bin``,
  ``sbin``/``soft_bin``, ``pass``/``passed``/``pf``/``result``, ``site``, ``head``, ``lot``,
  ``wafer``/``slot``, ``defects``/``defect_count``); other columns are ignored;
* the minimal schema is x, y and a pass column or a bin column. Without a pass column a die
  passes when its hard bin (else its soft bin) is in the pass bins: ``{1}`` unless the file says
  ``# pass_bins: 1, 2`` or the format is built with ``CsvFormat(pass_bins=...)``;
* rows are grouped into wafers by the lot and wafer columns when present, in order of first
  appearance; the same (x, y) twice on a wafer is a retest handled by ``ReadOptions.retest``.

Text must be UTF-8 (a BOM is allowed). Quoted fields follow RFC 4180 (Python's ``csv``). Errors
are :class:`FormatError` naming the line and the column. Sniffing needs a recognised header, so
KLARF, STDF datalogs and free text are not taken for die lists.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO, ClassVar, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError, WaferMapError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source, select_retests
from waferscope.protocols.formats.csv._meta import (
    Fail,
    Metadata,
    metadata_lines,
    parse_metadata,
)
from waferscope.protocols.wafermap import DieTable, Provenance, WaferMap

__all__ = ["COLUMN_ALIASES", "DEFAULT_PASS_BINS", "CsvFormat"]

FORMAT_NAME: Final = "csv"
DEFAULT_PASS_BINS: Final = frozenset({1})

COLUMN_ALIASES: Final[dict[str, frozenset[str]]] = {
    "x": frozenset(
        {
            "x",
            "col",
            "column",
            "die_x",
            "diex",
            "xindex",
            "x_index",
            "x_coord",
            "xcoord",
            "x_coordinate",
            "xcoordinate",
            "x_pos",
        }
    ),
    "y": frozenset(
        {
            "y",
            "row",
            "die_y",
            "diey",
            "yindex",
            "y_index",
            "y_coord",
            "ycoord",
            "y_coordinate",
            "ycoordinate",
            "y_pos",
        }
    ),
    "hard_bin": frozenset({"bin", "hbin", "hard_bin", "hardbin", "hbin_num", "hard_bin_number"}),
    "soft_bin": frozenset({"sbin", "soft_bin", "softbin", "sbin_num", "soft_bin_number"}),
    "passed": frozenset(
        {"pass", "passed", "pass_fail", "passfail", "pf", "p_f", "result", "pass_flag"}
    ),
    "site": frozenset({"site", "site_num", "site_number", "site_no"}),
    "head": frozenset({"head", "head_num", "head_number", "head_no"}),
    "lot": frozenset({"lot", "lot_id", "lotid", "lot_number", "lot_no"}),
    "wafer": frozenset(
        {"wafer", "wafer_id", "waferid", "wafer_number", "wafer_no", "slot", "slot_id"}
    ),
    "defect_count": frozenset(
        {"defects", "defect_count", "defectcount", "num_defects", "n_defects"}
    ),
}
_ALIAS_TO_COLUMN: Final = {a: c for c, aliases in COLUMN_ALIASES.items() for a in aliases}
_PASS_WORDS: Final = {
    **dict.fromkeys(("1", "p", "pass", "passed", "true", "t", "good", "g", "y", "yes", "ok"), True),
    **dict.fromkeys(
        ("0", "f", "fail", "failed", "false", "bad", "b", "n", "no", "ng", "reject"), False
    ),
}
_DELIMITERS: Final = ("\t", ",", ";", "|")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_INT32_MAX: Final = 2**31 - 1
_WRITE_ORDER: Final = ("x", "y", "passed", "hard_bin", "soft_bin", "site", "head", "defect_count")


def normalise_name(name: str) -> str:
    """A header name as matched against the aliases: lower case, separators as ``_``."""
    return re.sub(r"[\s\-./]+", "_", name.strip().strip("\"'").strip().lower()).strip("_")


def _header_columns(line: str) -> tuple[str | None, list[str], dict[str, int]] | None:
    """Delimiter (None = blanks), raw names and recognised columns, or None if not a header."""
    if not line.strip() or line.lstrip().startswith(("#", "<")):
        return None
    candidates: list[tuple[str | None, list[str]]] = []
    for char in _DELIMITERS:
        if char in line:
            try:
                candidates.append((char, next(csv.reader([line], delimiter=char))))
            except (csv.Error, StopIteration):
                continue
    candidates.append((None, line.split()))
    for delimiter, names in candidates:
        found: dict[str, int] = {}
        for i, name in enumerate(names):
            column = _ALIAS_TO_COLUMN.get(normalise_name(name))
            if column is not None and column not in found:
                found[column] = i
        if "x" in found and "y" in found and found.keys() & {"passed", "hard_bin", "soft_bin"}:
            return delimiter, names, found
    return None


def _split_lines(text: str) -> list[str]:
    """Lines ended by LF, CRLF or a lone CR (the three conventions text files use)."""
    return _LINE_BREAK.split(text)


class CsvFormat:
    """Delimited-text die lists (x, y, pass/bin, ...), read and written."""

    name: ClassVar[str] = FORMAT_NAME
    title: ClassVar[str] = "CSV / delimited die list (x, y, pass or bin; documented aliases)"

    def __init__(self, pass_bins: Iterable[int] = DEFAULT_PASS_BINS) -> None:
        self.pass_bins = frozenset(int(b) for b in pass_bins)

    # ------------------------------------------------------------------ detection
    def sniff(self, head: bytes) -> bool:
        if b"\x00" in head:
            return False
        head = head.removeprefix(b"\xef\xbb\xbf")
        cut = head.rfind(b"\n")
        try:
            text = (head[:cut] if cut >= 0 else head).decode("utf-8")
        except UnicodeDecodeError:
            return False
        for line in _split_lines(text):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            return _header_columns(line) is not None
        return False

    # ------------------------------------------------------------------ reading
    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        data = source.read_all(options.max_text_bytes).removeprefix(b"\xef\xbb\xbf")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise FormatError(
                "the text is not UTF-8",
                format=FORMAT_NAME,
                source=source.name,
                line=line,
                offset=exc.start,
            ) from None
        lines = _split_lines(text)
        truncated = source.truncated
        if truncated and not text.endswith("\n"):
            lines.pop()  # the last line was cut short

        def fail(reason: str, line: int) -> FormatError:
            return FormatError(reason, format=FORMAT_NAME, source=source.name, line=line)

        index = 0
        comments: list[tuple[int, str]] = []
        while index < len(lines) and (
            not lines[index].strip() or lines[index].lstrip().startswith("#")
        ):
            if lines[index].strip():
                comments.append((index + 1, lines[index].lstrip()[1:]))
            index += 1
        meta = parse_metadata(comments, fail)
        if index == len(lines):
            last_line = max(len(lines) - (1 if lines and not lines[-1] else 0), 1)
            raise fail("no header line (x, y and a pass or bin column)", last_line)
        header = _header_columns(lines[index])
        if header is None:
            raise fail(
                "header does not name x, y and a pass or bin column "
                f"(found {lines[index][:120]!r}; see the documented aliases)",
                index + 1,
            )
        delimiter, names, columns = header
        rows, row_lines = _data_rows(lines, index + 1, delimiter, len(names), fail)
        if len(rows) > options.max_dies:
            raise fail(f"more than {options.max_dies:,} dies (ReadOptions.max_dies)", index + 1)
        pass_bins = meta.pass_bins if meta.pass_bins is not None else self.pass_bins
        table = _Columns(rows, row_lines, names, columns, fail)
        yield from _wafers(table, meta, pass_bins, options.retest, source.name, truncated, fail)

    # ------------------------------------------------------------------ writing
    def write(self, maps: list[WaferMap], stream: BinaryIO) -> None:
        """Write the wafers as one UTF-8 CSV with ``# key: value`` metadata comments."""
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        try:
            _write(maps, text)
        finally:
            text.flush()
            text.detach()


# ---------------------------------------------------------------------- rows and columns
def _data_rows(
    lines: list[str], start: int, delimiter: str | None, width: int, fail: Fail
) -> tuple[list[list[str]], list[int]]:
    """The data rows (split into fields) and their 1-based line numbers.

    Blank lines and ``#`` lines are skipped. Without a quote character the lines are split with
    ``str.split`` (fast); otherwise Python's ``csv`` reader handles RFC 4180 quoting.
    """
    body = lines[start:]
    numbers = [
        start + i + 1 for i, line in enumerate(body) if line.strip() and line.lstrip()[0] != "#"
    ]
    kept = [body[n - start - 1] for n in numbers]
    rows: list[list[str]]
    if delimiter is None:
        rows = [line.split() for line in kept]
    elif not any('"' in line for line in kept):
        rows = [line.split(delimiter) for line in kept]
    else:
        rows, numbers = [], []
        reader = csv.reader(body, delimiter=delimiter, skipinitialspace=True)
        try:
            for row in reader:
                if row and (len(row) > 1 or row[0].strip()) and not row[0].lstrip().startswith("#"):
                    rows.append(row)
                    numbers.append(start + reader.line_num)
        except csv.Error as exc:
            raise fail(f"unreadable CSV ({exc})", start + reader.line_num + 1) from None
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    for k in np.flatnonzero(lengths != width).tolist():
        row = rows[k]
        if len(row) < width or any(f.strip() for f in row[width:]):
            raise fail(f"expected {width} fields, found {len(row)}", numbers[k])
        rows[k] = row[:width]
    return rows, numbers


class _Columns:
    """Typed access to the recognised columns, with errors naming line and column."""

    def __init__(
        self,
        rows: list[list[str]],
        row_lines: list[int],
        names: list[str],
        columns: dict[str, int],
        fail: Fail,
    ) -> None:
        self.rows = rows
        self.lines = np.array(row_lines, dtype=np.int64)
        self.names = names
        self.columns = columns
        self.fail = fail

    def has(self, column: str) -> bool:
        return column in self.columns

    def strings(self, column: str) -> list[str]:
        i = self.columns[column]
        return [row[i].strip() for row in self.rows]

    def _error(self, column: str, k: int, reason: str) -> FormatError:
        name = self.names[self.columns[column]].strip()
        return self.fail(f"column {name!r}: {reason}", int(self.lines[k]))

    def integers(self, column: str, *, empty: int | None, minimum: int) -> npt.NDArray[np.int64]:
        values = self.strings(column)
        try:
            arr = np.array(values, dtype=np.int64)
        except (ValueError, OverflowError):
            arr = np.array([self._integer(column, k, v, empty) for k, v in enumerate(values)])
            arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < minimum) | (arr > _INT32_MAX))
        if bad.size and not (empty is not None and np.all(arr[bad] == empty)):
            k = int(bad[np.flatnonzero(arr[bad] != empty)[0]] if empty is not None else bad[0])
            raise self._error(column, k, f"{values[k]!r} is out of range")
        return arr

    def _integer(self, column: str, k: int, value: str, empty: int | None) -> int:
        if not value:
            if empty is None:
                raise self._error(column, k, "empty value")
            return empty
        try:
            return int(value)
        except ValueError:
            pass
        try:
            as_float = float(value)
        except ValueError:
            raise self._error(column, k, f"{value!r} is not an integer") from None
        if not as_float.is_integer():
            raise self._error(column, k, f"{value!r} is not an integer")
        return int(as_float)

    def pass_flags(self, column: str) -> npt.NDArray[np.bool_]:
        values = self.strings(column)
        try:
            return np.fromiter(
                map(_PASS_LOOKUP.__getitem__, values), dtype=np.bool_, count=len(values)
            )
        except KeyError:
            k = next(k for k, v in enumerate(values) if v.lower() not in _PASS_WORDS)
            raise self._error(
                column, k, f"{values[k]!r} is not a pass/fail value (1/0, P/F, pass/fail, ...)"
            ) from None


class _PassLookup(dict[str, bool]):
    """Pass/fail words in any letter case; unknown words raise KeyError."""

    def __missing__(self, key: str) -> bool:
        flag = _PASS_WORDS[key.lower()]  # KeyError for words that are neither
        self[key] = flag
        return flag


_PASS_LOOKUP: Final = _PassLookup()


def _wafers(
    table: _Columns,
    meta: Metadata,
    pass_bins: frozenset[int],
    retest: RetestPolicy,
    source: str,
    truncated: bool,
    fail: Fail,
) -> Iterator[WaferMap]:
    x = table.integers("x", empty=None, minimum=-_INT32_MAX)
    y = table.integers("y", empty=None, minimum=-_INT32_MAX)
    optional = {
        name: table.integers(name, empty=fill, minimum=fill) if table.has(name) else None
        for name, fill in (
            ("hard_bin", -1),
            ("soft_bin", -1),
            ("site", -1),
            ("head", -1),
            ("defect_count", 0),
        )
    }
    for name in ("site", "head"):
        values = optional[name]
        if values is not None and values.size and int(values.max()) > 32767:
            k = int(np.argmax(values > 32767))
            raise table._error(name, k, f"{int(values[k])} is out of range")
    notes: list[str] = []
    if table.has("passed"):
        passed = table.pass_flags("passed")
    else:
        bins = optional["hard_bin"] if optional["hard_bin"] is not None else optional["soft_bin"]
        assert bins is not None
        passed = np.isin(bins, np.fromiter(pass_bins, dtype=np.int64, count=len(pass_bins)))
        kind = "hard" if optional["hard_bin"] is not None else "soft"
        notes.append(f"no pass column; dies in {kind} bins {sorted(pass_bins)} pass")

    lots = table.strings("lot") if table.has("lot") else None
    wafer_ids = table.strings("wafer") if table.has("wafer") else None
    groups: dict[tuple[str | None, str | None], int] = {}
    n = len(table.rows)
    if (lots is None and wafer_ids is None) or n == 0:
        groups[(None, None)] = 0
        group_of = np.zeros(n, dtype=np.int64)
    else:
        nothing: list[str | None] = [None] * n
        keys = zip(lots or nothing, wafer_ids or nothing, strict=True)
        group_of = np.fromiter(
            (groups.setdefault(key, len(groups)) for key in keys), dtype=np.int64, count=n
        )
    order = np.argsort(group_of, kind="stable")
    bounds = np.searchsorted(group_of[order], np.arange(len(groups) + 1))
    for g, (lot, wafer_id) in enumerate(groups):
        rows = order[bounds[g] : bounds[g + 1]]
        keep, retested, extra_results = select_retests(x[rows], y[rows], passed[rows], retest)
        rows = rows[keep]
        wafer_notes = list(notes)
        if retested:
            kept = (
                "kept every result"
                if retest is RetestPolicy.ALL
                else (f"kept the {retest.value} result of each")
            )
            wafer_notes.append(
                f"retests: {retested:,} dies were listed more than once ({extra_results:,} extra "
                f"results); retest policy '{retest.value}' {kept}"
            )
        last = g == len(groups) - 1
        if truncated and last:
            wafer_notes.append("the compressed stream ended early; the die list may be cut")
        first_line = int(table.lines[rows[0]]) if rows.size else None
        try:
            dies = DieTable.build(
                x=x[rows],
                y=y[rows],
                passed=passed[rows],
                **{k: None if v is None else v[rows] for k, v in optional.items()},
            )
            info = meta.info(lot_id=lot or None, wafer_id=wafer_id or None)
        except WaferMapError as exc:
            raise fail(str(exc), first_line or 1) from None
        yield WaferMap(
            dies=dies,
            provenance=Provenance(
                source=source, format=FORMAT_NAME, wafer_index=g, record_index=g, line=first_line
            ),
            info=info,
            orientation=meta.orientation,
            labels=meta.labels,
            partial=truncated and last,
            notes=tuple(wafer_notes),
        )


# ---------------------------------------------------------------------- writing
def _write(maps: Sequence[WaferMap], out: io.TextIOWrapper) -> None:
    many = len(maps) > 1
    for line in metadata_lines(maps):
        out.write(f"# {line}\n")
    present = [
        c
        for c in _WRITE_ORDER
        if c in ("x", "y", "passed", "hard_bin")
        or any(bool(np.any(getattr(m.dies, c) != (0 if c == "defect_count" else -1))) for m in maps)
    ]
    header = (["lot", "wafer"] if many else []) + ["pass" if c == "passed" else c for c in present]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    seen: set[tuple[str, str]] = set()
    for number, wafer in enumerate(maps, start=1):
        prefix: list[str] = []
        if many:
            key = (wafer.info.lot_id or "", wafer.info.wafer_id or "")
            if key in seen:  # rows are grouped by (lot, wafer): keep wafers apart
                key = (key[0], f"{key[1]}#{number}")
            seen.add(key)
            prefix = list(key)
        columns: list[list[str]] = []
        for c in present:
            values = getattr(wafer.dies, c)
            if c == "passed":
                columns.append(["1" if v else "0" for v in values.tolist()])
            elif c in ("x", "y", "defect_count"):
                columns.append([str(v) for v in values.tolist()])
            else:
                columns.append(["" if v < 0 else str(v) for v in values.tolist()])
        writer.writerows(prefix + list(row) for row in zip(*columns, strict=True))
