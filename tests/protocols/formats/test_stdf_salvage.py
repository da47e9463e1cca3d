"""Corrupt data late in a multi-wafer STDF file: earlier wafers are kept, the error still raised."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats import Source, read_maps

WIR = (2, 10)
PRR = (5, 20)


def record_starts(data: bytes, order: str) -> list[tuple[int, int, int]]:
    """(offset, REC_TYP, REC_SUB) of every record, walked independently of the reader."""
    out = []
    p = 0
    while p + 4 <= len(data):
        (length,) = struct.unpack_from(order + "H", data, p)
        out.append((p, data[p + 2], data[p + 3]))
        p += 4 + length
    return out


def test_corruption_in_the_third_wafer_keeps_the_first_two(tester_dir: Path) -> None:
    data = bytearray(gzip.decompress((tester_dir / "stdf/a595.stdf.gz").read_bytes()))
    order = ">" if data[4] == 1 else "<"  # FAR CPU_TYPE: 1 = big-endian
    records = record_starts(bytes(data), order)
    wirs = [off for off, t, s in records if (t, s) == WIR]
    assert len(wirs) == 3
    prrs_after = [off for off, t, s in records if (t, s) == PRR and off > wirs[2]]
    victim = prrs_after[len(prrs_after) // 2]  # the middle of the third wafer
    data[victim + 2] = 99  # REC_TYP 99 is not defined by STDF V4

    got = []
    maps = read_maps(Source.from_bytes(bytes(data), name="corrupt.stdf"))
    with pytest.raises(FormatError) as exc:
        got.extend(maps)
    assert f"byte {victim}" in str(exc.value)
    assert [w.info.wafer_id for w in got] == ["02", "03", "09"]
    assert [w.partial for w in got] == [False, False, True]
    assert [w.die_count for w in got[:2]] == [112, 112]
    assert 0 < got[2].die_count < 112
    assert any("corrupt data" in n for n in got[2].notes)
