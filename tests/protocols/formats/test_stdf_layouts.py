"""STDF V4 reader on hand-built streams: heads, missing WIR, omitted fields, bins, odd records.

Every stream here is packed with ``struct`` straight from the STDF V4 record layouts, not with
the waferscope writer, so that these tests check the reader against the specification.
"""

from __future__ import annotations

import struct

import pytest

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.stdf.reader import StdfFormat
from waferscope.protocols.wafermap import Side, WaferMap


class Stream:
    """Packs STDF V4 records in one byte order."""

    def __init__(self, order: str = "<") -> None:
        self.o = order
        self.parts: list[bytes] = []
        self.rec(0, 10, bytes((2 if order == "<" else 1, 4)))  # FAR

    def rec(self, typ: int, sub: int, body: bytes) -> Stream:
        self.parts.append(struct.pack(self.o + "HBB", len(body), typ, sub) + body)
        return self

    def pack(self, fmt: str, *values: object) -> bytes:
        return struct.pack(self.o + fmt, *values)

    def mir(self, lot: str = "LOT1") -> Stream:
        fixed = self.pack(
            "IIBcccHc", 1_000_000_000, 1_000_000_100, 1, b"P", b" ", b" ", 65535, b" "
        )
        strings = [lot, "PART", "node1", "J750", "prog"]
        return self.rec(1, 10, fixed + b"".join(bytes((len(s),)) + s.encode() for s in strings))

    def wir(self, head: int, wafer_id: str) -> Stream:
        return self.rec(2, 10, self.pack("BBI", head, 255, 1_000_000_200) + cn(wafer_id))

    def wrr(self, head: int, parts: int, wafer_id: str = "") -> Stream:
        counts = (parts, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        return self.rec(2, 20, self.pack("BBI5I", head, 255, 1_000_000_900, *counts) + cn(wafer_id))

    def prr(
        self,
        head: int,
        x: int,
        y: int,
        *,
        flag: int = 0,
        hard: int = 1,
        soft: int = 1,
        site: int = 0,
        keep: int | None = None,
    ) -> Stream:
        body = self.pack("BBBHHHhhI", head, site, flag, 3, hard, soft, x, y, 0) + cn("1")
        self.rec(5, 10, bytes((head, site)))  # PIR
        return self.rec(5, 20, body if keep is None else body[:keep])

    def ptr(self, head: int = 1) -> Stream:
        return self.rec(15, 10, self.pack("IBBBBf", 100, head, 0, 0, 0, 1.5) + cn("VDD"))

    def bins(self, sub: int, number: int, pf: bytes, name: str) -> Stream:
        return self.rec(1, sub, self.pack("BBHIc", 255, 0, number, 1, pf) + cn(name))

    def mrr(self) -> Stream:
        return self.rec(1, 20, self.pack("Ic", 1_000_001_000, b" "))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def cn(text: str) -> bytes:
    return bytes((len(text),)) + text.encode("latin-1")


def read(data: bytes, **options: object) -> list[WaferMap]:
    return list(StdfFormat().read(Source.from_bytes(data, "s.stdf"), ReadOptions(**options)))  # type: ignore[arg-type]


def coords(m: WaferMap) -> list[tuple[int, int]]:
    return list(zip(m.dies.x.tolist(), m.dies.y.tolist(), strict=True))


@pytest.mark.parametrize("order", ["<", ">"])
def test_two_heads_testing_two_wafers_at_once(order: str) -> None:
    s = Stream(order).mir().wir(1, "W-A").wir(2, "W-B")
    for i in range(5):
        s.prr(1, i, 0).ptr(1).prr(2, i, 10, flag=0x08, hard=5, soft=50)
    s.wrr(2, 5, "W-B").prr(1, 9, 9).wrr(1, 6, "W-A").mrr()
    a, b = read(s.bytes())
    assert (a.info.wafer_id, b.info.wafer_id) == ("W-A", "W-B")
    assert coords(a) == [(i, 0) for i in range(5)] + [(9, 9)]
    assert coords(b) == [(i, 10) for i in range(5)]
    assert a.dies.head.tolist() == [1] * 6 and b.dies.head.tolist() == [2] * 5
    assert a.pass_count == 6 and b.fail_count == 5
    assert b.dies.hard_bin.tolist() == [5] * 5 and b.dies.soft_bin.tolist() == [50] * 5
    assert not a.partial and not b.partial
    assert a.info.lot_id == "LOT1" and a.info.tester_id == "node1" and a.info.program == "prog"
    assert a.info.extra["tester_type"] == "J750"


def test_prrs_of_another_head_join_the_only_open_wafer() -> None:
    # Some writers put HEAD_NUM 255 (or another number) in WIR/WRR but the real head in PRRs.
    s = Stream().mir().wir(255, "W1").prr(1, 0, 0).prr(1, 1, 0).wrr(255, 2, "W1")
    s.wir(255, "W2").prr(1, 5, 5).wrr(1, 1, "W2").mrr()
    first, second = read(s.bytes())
    assert (first.info.wafer_id, first.die_count, first.partial) == ("W1", 2, False)
    assert (second.info.wafer_id, second.die_count, second.partial) == ("W2", 1, False)
    assert first.dies.head.tolist() == [1, 1]
    assert any("assigned to the only wafer open (WIR head 255)" in n for n in first.notes)
    assert any("closed by a WRR of head 1" in n for n in second.notes)


def test_parts_without_any_wir_form_one_wafer_per_head() -> None:
    s = Stream().mir()
    for i in range(4):
        s.prr(1, i, 1).prr(3, i, 2)
    maps = read(s.mrr().bytes())
    assert [m.die_count for m in maps] == [4, 4]
    assert [int(m.dies.head[0]) for m in maps] == [1, 3]
    assert all(m.info.wafer_id is None and not m.partial for m in maps)
    assert all(any("outside any WIR" in n for n in m.notes) for m in maps)


def test_a_wrr_without_wir_names_the_collected_wafer() -> None:
    s = Stream().mir().prr(1, 0, 0).prr(1, 1, 0).wrr(1, 2, "LATE-ID").mrr()
    (m,) = read(s.bytes())
    assert m.info.wafer_id == "LATE-ID" and m.die_count == 2 and not m.partial


def test_wafer_without_wrr_at_end_of_file_is_partial() -> None:
    (m,) = read(Stream().mir().wir(1, "W1").prr(1, 0, 0).bytes())
    assert m.partial and m.die_count == 1
    assert any("before this wafer's WRR" in n for n in m.notes)


def test_missing_pass_fail_flag_is_settled_by_bin_records() -> None:
    no_flag = 0x10  # PART_FLG bit 4: bit 3 is not valid
    s = Stream().mir().wir(1, "W1")
    s.prr(1, 0, 0, flag=no_flag | 0x08, hard=1, soft=1)  # HBR says bin 1 passes
    s.prr(1, 1, 0, flag=no_flag, hard=7, soft=70)  # HBR: 7 fails
    s.prr(1, 2, 0, flag=no_flag, hard=9, soft=90)  # no HBR P/F for 9; SBR 90 passes
    s.prr(1, 3, 0, flag=no_flag, hard=1, soft=11)  # bin 1 via HBR again
    s.prr(1, 4, 0, flag=no_flag, hard=2, soft=12)  # nothing known: convention, bin 2 fails
    s.wrr(1, 5)
    s.bins(40, 1, b"P", "GOOD").bins(40, 7, b"F", "OPEN").bins(40, 9, b" ", "")
    s.bins(50, 90, b"P", "GOOD_SLOW").mrr()
    (m,) = read(s.bytes())
    assert m.dies.passed.tolist() == [True, False, True, True, False]
    assert m.info.extra["hard_bin.7.name"] == "OPEN"
    assert m.info.extra["hard_bin.7.pass"] == "false"
    assert m.info.extra["soft_bin.90.name"] == "GOOD_SLOW"
    (note,) = [n for n in m.notes if "PART_FLG bit 4" in n]
    assert "3 by HBR" in note and "1 by SBR" in note and "1 by the 'hard bin 1 = pass'" in note


def test_omitted_trailing_prr_fields_take_their_missing_values() -> None:
    s = Stream().mir().wir(1, "W1")
    s.prr(1, 4, 5, hard=3, soft=33, keep=13)  # ends after Y_COORD: TEST_T, PART_ID omitted
    s.prr(1, 6, 7, hard=3, soft=33, keep=7)  # ends after HARD_BIN: SOFT_BIN, X, Y omitted
    s.prr(1, 8, 9, hard=3, soft=33, keep=9)  # ends after SOFT_BIN
    (m,) = read(s.wrr(1, 3).mrr().bytes())
    assert coords(m) == [(4, 5)]  # the other two have no coordinates (-32768)
    assert m.dies.soft_bin.tolist() == [33]
    assert any("2 parts have no valid X/Y" in n for n in m.notes)
    assert any("WRR PART_CNT" not in n for n in m.notes)


def test_truncated_prr_field_is_corruption_not_omission() -> None:
    s = Stream().mir().wir(1, "W1").prr(1, 0, 0).prr(1, 1, 1, keep=6).wrr(1, 2).mrr()
    with pytest.raises(FormatError) as info:
        read(s.bytes())
    assert info.value.location.record == "PRR #2"


def test_wcr_fields_give_geometry_and_orientation() -> None:
    s = Stream().mir()
    # WF_UNITS 1 = inches: an 8 in wafer of 0.25 in x 0.2 in dies.
    s.rec(2, 30, s.pack("fffBchhcc", 8.0, 0.25, 0.2, 1, b"L", 3, -4, b"L", b"U"))
    (m,) = read(s.wir(1, "W").prr(1, 0, 0).wrr(1, 1).mrr().bytes())
    assert m.info.wafer_size_mm == pytest.approx(203.2)
    assert m.info.die_height_um == pytest.approx(6350.0)
    assert m.info.die_width_um == pytest.approx(5080.0)
    assert (m.info.center_x, m.info.center_y) == (3, -4)
    assert m.orientation.mark is Side.LEFT
    assert m.orientation.mark_kind is None  # STDF does not say flat or notch
    assert m.orientation.x_increases is Side.LEFT
    assert m.orientation.y_increases is Side.UP


def test_wcr_that_ends_early_leaves_directions_unknown() -> None:
    s = Stream().mir()
    s.rec(2, 30, s.pack("fffBc", 200.0, 5.0, 5.0, 3, b"U"))  # stops after WF_FLAT
    (m,) = read(s.wir(1, "W").prr(1, 0, 0).wrr(1, 1).mrr().bytes())
    assert m.info.wafer_size_mm == 200.0 and m.info.die_width_um == 5000.0
    assert m.orientation.mark is Side.UP
    assert any("POS_X" in n for n in m.notes) and any("POS_Y" in n for n in m.notes)


def test_sdr_equipment_ids_go_into_extra() -> None:
    s = Stream().mir()
    ids = ["prober-T", "P17", "card-T", "PC-0042", "lb-T", "LB-7"]
    s.rec(1, 80, bytes((1, 1, 2, 0, 1)) + b"".join(cn(v) for v in ids))  # rest omitted
    (m,) = read(s.wir(1, "W").prr(1, 0, 0).wrr(1, 1).mrr().bytes())
    assert m.info.extra["probe_card_id"] == "PC-0042"
    assert m.info.extra["probe_card_type"] == "card-T"
    assert m.info.extra["load_board_id"] == "LB-7"
    assert m.info.extra["prober_id"] == "P17"
    assert m.info.extra["test_sites"] == "0,1"
    assert "dib_id" not in m.info.extra


def test_undefined_sub_types_and_reserved_types_are_skipped() -> None:
    s = Stream().mir().wir(1, "W").prr(1, 0, 0)
    s.rec(180, 7, b"\x01\x02\x03").rec(181, 1, b"").rec(1, 99, b"\x00" * 9).rec(15, 40, b"")
    (m,) = read(s.prr(1, 1, 0).wrr(1, 2).mrr().bytes())
    assert m.die_count == 2
    assert any("1/99" in n and "15/40" in n for n in m.notes)


def test_second_far_must_agree() -> None:
    same = Stream().mir().rec(0, 10, b"\x02\x04").wir(1, "W").prr(1, 0, 0).wrr(1, 1).mrr()
    assert read(same.bytes())[0].die_count == 1
    other = Stream().mir()
    other.parts.append(b"\x00\x02\x00\x0a\x01\x04")
    with pytest.raises(FormatError, match="FAR"):
        read(other.bytes())


def test_retested_die_counts_and_policies() -> None:
    s = Stream().mir().wir(1, "W")
    s.prr(1, 0, 0, flag=0x08, hard=4).prr(1, 1, 0).prr(1, 0, 0, flag=0x0A, hard=6)
    s.prr(1, 0, 0, flag=0x02, hard=1).prr(1, 2, 0, flag=0x08, hard=3)
    data = s.wrr(1, 5).mrr().bytes()
    expected = {
        RetestPolicy.LAST: [1, 1, 3],
        RetestPolicy.FIRST: [4, 1, 3],
        RetestPolicy.BEST: [1, 1, 3],
        RetestPolicy.ALL: [4, 1, 6, 1, 3],
    }
    for policy, bins in expected.items():
        (m,) = read(data, retest=policy)
        assert sorted(m.dies.hard_bin.tolist()) == sorted(bins), policy
        assert any("1 dies tested more than once, 2 extra results" in n for n in m.notes)
        assert any("2 PRRs are flagged as retests" in n for n in m.notes)
    (best,) = read(data, retest=RetestPolicy.BEST)
    assert dict(zip(coords(best), best.dies.passed.tolist(), strict=True))[(0, 0)]


def test_best_keeps_a_pass_even_when_a_later_retest_fails() -> None:
    s = Stream().mir().wir(1, "W").prr(1, 0, 0, hard=1).prr(1, 0, 0, flag=0x0A, hard=5)
    data = s.wrr(1, 2).mrr().bytes()
    assert read(data, retest=RetestPolicy.BEST)[0].dies.hard_bin.tolist() == [1]
    assert read(data, retest=RetestPolicy.LAST)[0].dies.hard_bin.tolist() == [5]


def test_large_multi_chunk_stream_keeps_every_part() -> None:
    s = Stream().mir().wir(1, "W")
    pad = s.rec  # GDRs between parts push records across the 4 MiB read chunks
    for i in range(900):
        s.prr(1, i % 300, i // 300, site=i % 4)
        pad(50, 10, bytes(6000))
    (m,) = read(s.wrr(1, 900).mrr().bytes(), retest=RetestPolicy.ALL)
    assert m.die_count == 900
    assert coords(m) == [(i % 300, i // 300) for i in range(900)]
    assert m.dies.site.tolist() == [i % 4 for i in range(900)]
