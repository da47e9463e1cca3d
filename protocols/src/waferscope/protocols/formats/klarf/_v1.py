"""KLARF 1.1 / 1.2 syntax: semicolon-terminated statements ``Keyword value ... ;``.

Statement order follows the KLARF 1.2 file specification (KLA-Tencor) as used by the public
readers btrapp/jklarfreader and Impro02/klarf-reader: a lot-level header (``FileVersion``,
``FileTimestamp``, ``InspectionStationID``, ``SampleType``, ``ResultTimestamp``, ``LotID``,
``SampleSize``, ``DeviceID``, ``SetupID``, ``StepID``, ``SampleOrientationMarkType``,
``OrientationMarkLocation``, ``DiePitch``, ``DieOrigin`` ...), then per wafer ``WaferID``,
``Slot``, ``SampleCenterLocation``, ``ClassLookup n (number "name")*``, ``InspectionTest k``,
``SampleTestPlan n (xindex yindex)*``, ``AreaPerTest``, ``DefectRecordSpec n NAME*``,
``DefectList`` rows, ``SummarySpec n NAME*``, ``SummaryList`` rows, and finally ``EndOfFile``.
A wafer ends where the next ``WaferID`` starts; header statements given once before the first
wafer apply to every wafer. ``DefectList`` may repeat (e.g. one per ``TiffFileName``); its rows
accumulate. Rows span lines freely: a column whose name ends in ``LIST`` (``IMAGELIST``) is
variable-length, a count ``k`` then ``k`` pairs (image number, image type).

Declared counts must match what follows; a statement without its ``;`` is an error naming the
line where it starts; a file without ``EndOfFile`` marks its last wafer partial.
"""

from __future__ import annotations

import math
from typing import Final

from waferscope.protocols.errors import TruncatedError
from waferscope.protocols.formats.klarf._lexer import INT32_MAX, Tokens, is_word, unquote
from waferscope.protocols.formats.klarf._wafer import DieList, RawWafer, canonical

_IGNORED: Final = frozenset({"INSPECTIONTEST", "AREAPERTEST", "TIFFFILENAME", "TIFFSPEC"})


class _V1Parser:
    def __init__(self, tokens: Tokens) -> None:
        self.t = tokens
        self.version = "1.x"
        self.lot_fields: dict[str, list[str]] = {}
        self.lot_classes: dict[str, str] = {}
        self.spec: list[str] = []
        self.summary_spec: list[str] = []
        self.wafers: list[RawWafer] = []
        self.current: RawWafer | None = None
        self.implicit = False  # the current wafer was opened by data before any WaferID

    # ------------------------------------------------------------------ helpers
    def _int(self, token: str, index: int, what: str) -> int:
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not value.is_integer() or abs(value) > INT32_MAX:
            self.t.fail_at(f"{what}: {token[:40]!r} is not an integer in range", index)
        return int(value)

    def _count(self, values: list[str], start: int, keyword: str) -> int:
        if not values:
            self.t.fail_at(f"{keyword} lacks its count", start)
        count = self._int(values[0], start + 1, f"{keyword} count")
        if count < 0:
            self.t.fail_at(f"{keyword} count {count} is negative", start + 1)
        return count

    def _wafer(self, start: int) -> RawWafer:
        if self.current is None:
            self.current = self._new_wafer(start)
            self.implicit = True
        return self.current

    def _new_wafer(self, start: int) -> RawWafer:
        wafer = RawWafer(
            tokens=self.t,
            line=self.t.line_at(start),
            version=self.version,
            units_nm=False,
            fields={k: list(v) for k, v in self.lot_fields.items()},
            defect_columns=self.spec,
            class_names=dict(self.lot_classes),
        )
        self.wafers.append(wafer)
        return wafer

    def _pairs(self, values: list[str], start: int, keyword: str) -> tuple[list[int], list[int]]:
        count = self._count(values, start, keyword)
        if len(values) != 1 + 2 * count:
            self.t.fail_at(
                f"{keyword} declares {count:,} dies but lists {(len(values) - 1) / 2:,.1f}", start
            )
        ints = [self._int(v, start + 2 + i, keyword) for i, v in enumerate(values[1:])]
        return ints[0::2], ints[1::2]

    def _names(self, values: list[str], start: int, keyword: str) -> list[str]:
        count = self._count(values, start, keyword)
        if len(values) != 1 + count:
            self.t.fail_at(f"{keyword} declares {count} columns but names {len(values) - 1}", start)
        return [unquote(v).upper() for v in values[1:]]

    # ------------------------------------------------------------------ statements
    def parse(self) -> list[RawWafer]:
        values = self.t.values
        n = len(values)
        i = 0
        ended = False
        while i < n:
            try:
                end = values.index(";", i)
            except ValueError:
                self.t.fail_at(
                    f"statement {values[i][:40]!r} is not terminated by ';' (file ends)",
                    i,
                    TruncatedError,
                )
            keyword = values[i]
            if not is_word(keyword):
                self.t.fail_at(f"expected a KLARF keyword, found {keyword[:40]!r}", i)
            upper = keyword.upper()
            if i == 0 and upper != "FILEVERSION":
                self.t.fail_at(f"a KLARF file starts with FileVersion, not {keyword[:40]!r}", i)
            if upper == "ENDOFFILE":
                ended = True
                break
            self._statement(upper, values[i + 1 : end], i)
            i = end + 1
        if not self.wafers:
            self._new_wafer(0)
        if not ended:
            last = self.wafers[-1]
            last.partial = True
            last.notes.append("the file ends without EndOfFile")
        return self.wafers

    def _statement(self, upper: str, values: list[str], start: int) -> None:
        if upper == "FILEVERSION":
            self.version = ".".join(values[:2]) if values else "1.x"
            self.lot_fields[upper] = [self.version]
        elif upper == "WAFERID":
            wafer_id = [unquote(v) for v in values]
            if self.current is not None and self.implicit and "WAFERID" not in self.current.fields:
                self.current.fields["WAFERID"] = wafer_id
            else:
                self.current = self._new_wafer(start)
                self.current.fields["WAFERID"] = wafer_id
            self.implicit = False
        elif upper in ("SAMPLETESTPLAN", "REMOVEDDIELIST"):
            xs, ys = self._pairs(values, start, upper)
            wafer = self._wafer(start)
            target: DieList = wafer.test_plan if upper == "SAMPLETESTPLAN" else wafer.removed
            target.extend(xs, ys)
            wafer.has_test_plan |= upper == "SAMPLETESTPLAN"
        elif upper == "SAMPLEDIEMAP":
            xs, _ = self._pairs(values, start, upper)
            scope = self.current.fields if self.current is not None else self.lot_fields
            scope[upper] = [str(len(xs))]
        elif upper == "CLASSLOOKUP":
            count = self._count(values, start, upper)
            if len(values) != 1 + 2 * count:
                self.t.fail_at(
                    f"ClassLookup declares {count} classes but lists more or fewer", start
                )
            classes = {values[k]: unquote(values[k + 1]) for k in range(1, len(values), 2)}
            (self.current.class_names if self.current else self.lot_classes).update(classes)
        elif upper == "DEFECTRECORDSPEC":
            self.spec = self._names(values, start, upper)
        elif upper == "DEFECTLIST":
            self._defect_list(values, start)
        elif upper == "SUMMARYSPEC":
            self.summary_spec = self._names(values, start, upper)
        elif upper == "SUMMARYLIST":
            self._summary_list(values, start)
        elif upper not in _IGNORED:
            scope = self.current.fields if self.current is not None else self.lot_fields
            scope[canonical(upper)] = [unquote(v) for v in values[:64]]

    def _defect_list(self, values: list[str], start: int) -> None:
        wafer = self._wafer(start)
        if wafer.defect_rows and wafer.defect_columns != self.spec:
            self.t.fail_at("DefectRecordSpec changes between the DefectLists of one wafer", start)
        wafer.defect_columns = self.spec
        if not values:
            return
        if not self.spec:
            self.t.fail_at("DefectList comes before any DefectRecordSpec", start)
        ncols = len(self.spec)
        is_list = [name.endswith("LIST") for name in self.spec]
        first = start + 1  # token index of values[0]
        if not any(is_list):
            if len(values) % ncols:
                self.t.fail_at(
                    f"DefectList holds {len(values):,} values, not a whole number of "
                    f"{ncols}-column defect records",
                    start,
                )
            wafer.defect_rows.extend([values[k : k + ncols] for k in range(0, len(values), ncols)])
            wafer.defect_starts.extend(range(first, first + len(values), ncols))
            return
        # Fixed-width runs between the variable-length list columns: (width, is_list).
        runs: list[tuple[int, bool]] = []
        for listed in is_list:
            if not listed and runs and not runs[-1][1]:
                runs[-1] = (runs[-1][0] + 1, False)
            else:
                runs.append((1, listed))
        p, n = 0, len(values)
        rows, starts = wafer.defect_rows, wafer.defect_starts
        while p < n:
            row_start = p
            row: list[str] = []
            for width, listed in runs:
                if p >= n:
                    self.t.fail_at("DefectList ends inside a defect record", first + row_start)
                if not listed:
                    row.extend(values[p : p + width])
                    p += width
                elif values[p] == "0":
                    row.append("0")
                    p += 1
                else:
                    k = self._int(values[p], first + p, "IMAGELIST count")
                    if k < 0 or p + 1 + 2 * k > n:
                        self.t.fail_at(f"IMAGELIST of {k} images runs past the list", first + p)
                    row.append(" ".join(values[p : p + 1 + 2 * k]))
                    p += 1 + 2 * k
            if p > n:
                self.t.fail_at("DefectList ends inside a defect record", first + row_start)
            rows.append(row)
            starts.append(first + row_start)

    def _summary_list(self, values: list[str], start: int) -> None:
        wafer = self._wafer(start)
        ncols = len(self.summary_spec)
        if not ncols:
            self.t.fail_at("SummaryList comes before any SummarySpec", start)
        if len(values) % ncols:
            self.t.fail_at(
                f"SummaryList holds {len(values)} values, not rows of {ncols} columns", start
            )
        wafer.summary_columns = self.summary_spec
        wafer.summary_rows.extend(values[k : k + ncols] for k in range(0, len(values), ncols))


def parse_v1(tokens: Tokens) -> list[RawWafer]:
    """Every wafer of a KLARF 1.1/1.2 file (raises FormatError naming the line)."""
    return _V1Parser(tokens).parse()
