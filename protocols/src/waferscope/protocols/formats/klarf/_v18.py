"""KLARF 1.8 syntax: nested ``Record``, ``Field`` and ``List`` blocks.

Grammar (KLARF 1.8 specification, KLA; as read by the public btrapp/jklarfreader)::

    file    := "Record" "FileRecord" "1.8" "{" item* "}" "EndOfFile" ";"?
    item    := "Record" TYPE ID? "{" item* "}"
             | "Field" NAME COUNT "{" value ("," value)* "}"
             | "List" NAME "{" "Columns" N "{" TYPE NAME ("," TYPE NAME)* "}"
                              "Data" M "{" (row ";")* "}" "}"

``FileRecord`` holds ``LotRecord`` s, which hold ``WaferRecord`` s (with ``DefectList``,
``TestRecord`` s carrying ``SampleTestPlanList`` and a ``SummaryRecord``); lot-level fields may
come after the wafer records. A column whose type ends in ``List`` (``ImageList``) holds an
embedded list ``NAME COUNT { ... }`` or ``N`` / ``0`` for none. Lengths are in nm.

Declared counts must match (``Field`` values, ``Columns``, ``Data`` rows and each row's
values); a block that the file ends inside is an error naming the line where it opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from waferscope.protocols.errors import TruncatedError
from waferscope.protocols.formats.klarf._lexer import INT32_MAX, Tokens, is_word, unquote
from waferscope.protocols.formats.klarf._wafer import RawWafer, canonical

MAX_DEPTH: Final = 32


@dataclass(slots=True)
class _List:
    columns: list[str]
    types: list[str]
    rows: list[list[str]]
    starts: list[int]  # token index of each row's first value


@dataclass(slots=True)
class _Record:
    kind: str
    ident: str | None
    line: int
    fields: dict[str, list[str]] = field(default_factory=dict)
    lists: dict[str, _List] = field(default_factory=dict)
    children: list[_Record] = field(default_factory=list)


class _V18Parser:
    def __init__(self, tokens: Tokens) -> None:
        self.t = tokens
        self.values = tokens.values
        self.i = 0

    def _next(self, context: str, opened: int) -> str:
        if self.i >= len(self.values):
            self.t.fail_at(f"file ends inside {context} opened here", opened, TruncatedError)
        token = self.values[self.i]
        self.i += 1
        return token

    def _expect(self, wanted: str, context: str, opened: int) -> None:
        at = self.i
        token = self._next(context, opened)
        if token != wanted:
            self.t.fail_at(f"expected {wanted!r} in {context}, found {token[:40]!r}", at)

    def _count(self, context: str, opened: int) -> int:
        at = self.i
        token = self._next(context, opened)
        if not token.isdigit():
            self.t.fail_at(f"expected a count in {context}, found {token[:40]!r}", at)
        return int(token)

    # ------------------------------------------------------------------ blocks
    def parse(self) -> tuple[_Record, bool]:
        """The FileRecord tree and whether EndOfFile follows it."""
        start = self.i
        self._expect("Record", "the file", start)
        root = self._record(start, depth=0)
        if root.kind.upper() != "FILERECORD":
            self.t.fail_at(
                f"a KLARF 1.8 file starts with Record FileRecord, not {root.kind!r}", start
            )
        ended = self.i < len(self.values) and self.values[self.i].upper() == "ENDOFFILE"
        return root, ended

    def _record(self, start: int, depth: int) -> _Record:
        if depth > MAX_DEPTH:
            self.t.fail_at(f"records nested deeper than {MAX_DEPTH}", start)
        kind = self._next("a Record", start)
        if not is_word(kind):
            self.t.fail_at(f"expected a record type, found {kind[:40]!r}", start)
        token = self._next(f"Record {kind}", start)
        ident = None
        if token != "{":
            ident = unquote(token)
            self._expect("{", f"Record {kind}", start)
        record = _Record(kind, ident, self.t.line_at(start))
        context = f"Record {kind}"
        while True:
            at = self.i
            token = self._next(context, start)
            if token == "}":
                return record
            if token == "Record":
                record.children.append(self._record(at, depth + 1))
            elif token == "Field":
                name, values = self._field(at)
                record.fields[canonical(name)] = values
            elif token == "List":
                name, data = self._list(at)
                record.lists[name.upper()] = data
            else:
                self.t.fail_at(f"expected Record, Field, List or '}}', found {token[:40]!r}", at)

    def _field(self, start: int) -> tuple[str, list[str]]:
        name = self._next("a Field", start)
        context = f"Field {name}"
        count = self._count(context, start)
        self._expect("{", context, start)
        values: list[str] = []
        current: list[str] = []
        while True:
            token = self._next(context, start)
            if token in ("}", ","):
                if current or token == "," or values:
                    values.append(" ".join(unquote(v) for v in current))
                current = []
                if token == "}":
                    break
            else:
                current.append(token)
        if len(values) != count:
            self.t.fail_at(f"{context} declares {count} values but holds {len(values)}", start)
        return name, values

    def _list(self, start: int) -> tuple[str, _List]:
        name = self._next("a List", start)
        context = f"List {name}"
        self._expect("{", context, start)
        columns_at = self.i
        self._expect("Columns", context, start)
        ncols = self._count(context, start)
        self._expect("{", context, start)
        types: list[str] = []
        columns: list[str] = []
        while True:
            col_type = self._next(context, start)
            if col_type == "}" and not columns:
                break
            col_name = self._next(context, start)
            types.append(col_type)
            columns.append(unquote(col_name).upper())
            sep = self._next(context, start)
            if sep == "}":
                break
            if sep != ",":
                self.t.fail_at(f"expected ',' or '}}' between the columns of {context}", self.i - 1)
        if len(columns) != ncols:
            self.t.fail_at(
                f"{context} declares {ncols} columns but names {len(columns)}", columns_at
            )
        data_at = self.i
        self._expect("Data", context, start)
        nrows = self._count(context, start)
        self._expect("{", context, start)
        rows, starts = self._rows(types, context, data_at)
        if len(rows) != nrows:
            self.t.fail_at(f"{context} declares {nrows:,} rows but holds {len(rows):,}", data_at)
        self._expect("}", context, start)
        return name, _List(columns, types, rows, starts)

    def _rows(
        self, types: list[str], context: str, opened: int
    ) -> tuple[list[list[str]], list[int]]:
        """Rows up to the closing ``}``; each ends with ``;`` and holds one value per column."""
        values = self.values
        ncols = len(types)
        embedded = [t.endswith("List") for t in types]
        rows: list[list[str]] = []
        starts: list[int] = []
        while True:
            row_at = self.i
            if self._next(context, opened) == "}":
                return rows, starts
            try:
                end = values.index(";", row_at)
            except ValueError:
                self.t.fail_at(f"file ends inside a row of {context}", row_at, TruncatedError)
            row = values[row_at:end]
            if "{" in row or "}" in row or "," in row:
                self.i = row_at
                row = self._row_with_lists(embedded, context, opened)
            else:
                self.i = end + 1
                for j, listed in enumerate(embedded):
                    if listed and j < len(row):
                        row[j] = self._embedded_empty(row[j], context, row_at + j)
            if len(row) != ncols:
                self.t.fail_at(f"a row of {context} holds {len(row)} values, not {ncols}", row_at)
            rows.append(row)
            starts.append(row_at)

    def _row_with_lists(self, embedded: list[bool], context: str, opened: int) -> list[str]:
        row: list[str] = []
        while True:
            at = self.i
            token = self._next(context, opened)
            if token == ";":
                return row
            if token in ("{", "}", ","):
                self.t.fail_at(f"unexpected {token!r} in a row of {context}", at)
            if len(row) < len(embedded) and embedded[len(row)]:
                row.append(self._embedded(token, context, at))
            else:
                row.append(token)

    def _embedded_empty(self, token: str, context: str, at: int) -> str:
        if token not in ("N", "0"):
            self.t.fail_at(f"embedded list {token[:40]!r} of {context} lacks its '{{...}}'", at)
        return ""

    def _embedded(self, token: str, context: str, at: int) -> str:
        """An embedded list (``Images 2 { ... }``) as one string; ``N``/``0`` mean none."""
        if token in ("N", "0"):
            return ""
        count = self._count(context, at)
        self._expect("{", context, at)
        parts: list[str] = [token, str(count)]
        while (value := self._next(context, at)) != "}":
            if value == "{":
                self.t.fail_at(f"nested '{{' in an embedded list of {context}", self.i - 1)
            parts.append(unquote(value))
        return " ".join(parts)


def _wafers(tokens: Tokens, root: _Record, ended: bool) -> list[RawWafer]:
    version = root.ident or "1.8"
    file_fields = {**root.fields, "FILEVERSION": [version]}
    wafers: list[RawWafer] = []
    for lot in root.children:
        if lot.kind.upper() != "LOTRECORD":
            continue
        lot_fields = {**file_fields, **lot.fields}
        if lot.ident is not None:
            lot_fields["LOTID"] = [lot.ident]
        classes: dict[str, str] = {}
        lookup = lot.lists.get("CLASSLOOKUPLIST")
        if lookup and "CLASSNUMBER" in lookup.columns and "CLASSNAME" in lookup.columns:
            num, nam = lookup.columns.index("CLASSNUMBER"), lookup.columns.index("CLASSNAME")
            classes = {row[num]: unquote(row[nam]) for row in lookup.rows}
        for rec in lot.children:
            if rec.kind.upper() == "WAFERRECORD":
                wafers.append(_wafer(tokens, version, lot_fields, classes, rec))
    if not ended and wafers:
        wafers[-1].partial = True
        wafers[-1].notes.append("the file ends without EndOfFile")
    return wafers


def _wafer(
    tokens: Tokens,
    version: str,
    lot_fields: dict[str, list[str]],
    classes: dict[str, str],
    rec: _Record,
) -> RawWafer:
    wafer = RawWafer(
        tokens=tokens,
        line=rec.line,
        version=version,
        units_nm=True,
        fields={**lot_fields, **rec.fields},
        class_names=dict(classes),
    )
    if rec.ident is not None:
        wafer.fields["WAFERID"] = [rec.ident]
    defects = rec.lists.get("DEFECTLIST")
    if defects is not None:
        wafer.defect_columns = defects.columns
        wafer.defect_rows = defects.rows
        wafer.defect_starts = defects.starts
    for child in rec.children:
        kind = child.kind.upper()
        if kind == "TESTRECORD":
            plan = child.lists.get("SAMPLETESTPLANLIST")
            if plan is not None:
                _add_plan(tokens, wafer, plan)
        elif kind == "SUMMARYRECORD":
            summary = child.lists.get("TESTSUMMARYLIST")
            if summary is not None:
                wafer.summary_columns = summary.columns
                wafer.summary_rows.extend(summary.rows)
    return wafer


def _add_plan(tokens: Tokens, wafer: RawWafer, plan: _List) -> None:
    if "XINDEX" not in plan.columns or "YINDEX" not in plan.columns:
        return
    xi, yi = plan.columns.index("XINDEX"), plan.columns.index("YINDEX")
    xs: list[int] = []
    ys: list[int] = []
    for row, start in zip(plan.rows, plan.starts, strict=True):
        try:
            x, y = int(row[xi]), int(row[yi])
        except ValueError:
            x = y = INT32_MAX + 1
        if abs(x) > INT32_MAX or abs(y) > INT32_MAX:
            tokens.fail_at(
                f"sample test plan die ({row[xi][:20]}, {row[yi][:20]}) is not two integers", start
            )
        xs.append(x)
        ys.append(y)
    wafer.test_plan.extend(xs, ys)
    wafer.has_test_plan = True


def parse_v18(tokens: Tokens) -> list[RawWafer]:
    """Every wafer of a KLARF 1.8 file (raises FormatError naming the line)."""
    root, ended = _V18Parser(tokens).parse()
    return _wafers(tokens, root, ended)
