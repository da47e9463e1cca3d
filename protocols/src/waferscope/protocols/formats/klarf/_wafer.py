"""The version-neutral content of one KLARF wafer, as both syntax parsers hand it over.

Values stay the strings of the file (unquoted); :mod:`.reader` converts and checks them, naming
the line through :attr:`RawWafer.tokens`. Field names are upper-cased and the KLARF 1.8 names
mapped onto the 1.1/1.2 ones (``SlotNumber`` -> ``SLOT``, ``RecipeID`` -> ``SETUPID``; the
record ids of ``LotRecord`` / ``WaferRecord`` / ``FileRecord`` become ``LOTID`` / ``WAFERID``
/ ``FILEVERSION``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from waferscope.protocols.formats.klarf._lexer import Tokens

FIELD_ALIASES: Final = {"SLOTNUMBER": "SLOT", "RECIPEID": "SETUPID"}


def canonical(name: str) -> str:
    upper = name.upper()
    return FIELD_ALIASES.get(upper, upper)


@dataclass(slots=True)
class DieList:
    """(x, y) die indexes of a sample test plan / removed-die list and where it was."""

    xs: list[int] = field(default_factory=list)
    ys: list[int] = field(default_factory=list)

    def extend(self, xs: list[int], ys: list[int]) -> None:
        self.xs.extend(xs)
        self.ys.extend(ys)


@dataclass(slots=True)
class RawWafer:
    """One wafer of a KLARF file, before conversion to a WaferMap."""

    tokens: Tokens
    line: int  # where the wafer starts (WaferID statement / WaferRecord)
    version: str
    units_nm: bool  # KLARF 1.8 gives lengths in nm, 1.1/1.2 in um
    fields: dict[str, list[str]] = field(default_factory=dict)
    defect_columns: list[str] = field(default_factory=list)
    defect_rows: list[list[str]] = field(default_factory=list)
    defect_starts: list[int] = field(default_factory=list)  # token index of each row's start
    test_plan: DieList = field(default_factory=DieList)
    removed: DieList = field(default_factory=DieList)
    has_test_plan: bool = False
    class_names: dict[str, str] = field(default_factory=dict)
    summary_columns: list[str] = field(default_factory=list)
    summary_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None
