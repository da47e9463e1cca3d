"""STDF V4 reader: golden values on real tester files, detection, errors, options, retests.

Expected values are computed *independently* of the reader: a tiny struct-based record walker
below decodes the PRR / WIR / WRR / WCR / SBR bytes at the offsets the STDF V4 specification
gives, and the a595 wafers are compared with the tester's own text datalog of the same run
(and with pystdf, when installed).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import re
import struct
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.stdf.reader import StdfFormat
from waferscope.protocols.wafermap import Side, WaferMap

FMT = StdfFormat()


# --------------------------------------------------------------------------- independent decoder
def records(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(offset, REC_TYP, REC_SUB, body) of every complete record; byte order from CPU_TYPE."""
    order = ">" if data[4] == 1 else "<"
    out, p = [], 0
    while p + 4 <= len(data):
        (length,) = struct.unpack_from(order + "H", data, p)
        if p + 4 + length > len(data):
            break
        out.append((p, data[p + 2], data[p + 3], data[p + 4 : p + 4 + length]))
        p += 4 + length
    return out


def order_of(data: bytes) -> str:
    return ">" if data[4] == 1 else "<"


def prrs(data: bytes) -> list[tuple[int, ...]]:
    """(HEAD_NUM, SITE_NUM, PART_FLG, HARD_BIN, SOFT_BIN, X_COORD, Y_COORD) of every PRR."""
    o = order_of(data)
    out = []
    for _, t, s, body in records(data):
        if (t, s) == (5, 20):
            head, site, flag, _num, hard, soft, x, y = struct.unpack_from(o + "BBBHHHhh", body)
            out.append((head, site, flag, hard, soft, x, y))
    return out


def prrs_per_wafer(data: bytes) -> list[list[tuple[int, ...]]]:
    """PRRs grouped by the WIR..WRR they sit in (single-head files)."""
    o = order_of(data)
    wafers: list[list[tuple[int, ...]]] = []
    for _, t, s, body in records(data):
        if (t, s) == (2, 10):
            wafers.append([])
        elif (t, s) == (5, 20):
            head, site, flag, _num, hard, soft, x, y = struct.unpack_from(o + "BBBHHHhh", body)
            wafers[-1].append((head, site, flag, hard, soft, x, y))
    return wafers


def cn_at(body: bytes, pos: int) -> str:
    return body[pos + 1 : pos + 1 + body[pos]].decode("latin-1")


def read(data: bytes, **options: object) -> list[WaferMap]:
    return list(FMT.read(Source.from_bytes(data, "t.stdf"), ReadOptions(**options)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lot2(tester_dir: Path) -> bytes:
    return gzip.decompress((tester_dir / "stdf" / "lot2.stdf.gz").read_bytes())


@pytest.fixture(scope="module")
def a595(tester_dir: Path) -> bytes:
    return gzip.decompress((tester_dir / "stdf" / "a595.stdf.gz").read_bytes())


# --------------------------------------------------------------------------- golden: lot2
def test_lot2_independent_counts_match_the_data_readme(lot2: bytes) -> None:
    parts = prrs(lot2)
    assert len(parts) == 1569
    assert len({(p[5], p[6]) for p in parts}) == 1456
    assert sum(1 for p in parts if p[3] == 1) == 1389
    assert lot2[:6] == b"\x00\x02\x00\x0a\x01\x04"  # FAR: big-endian (Sun), STDF V4


def test_lot2_last_result_per_die(lot2: bytes) -> None:
    parts = prrs(lot2)
    last: dict[tuple[int, int], tuple[int, ...]] = {}
    for p in parts:
        last[(p[5], p[6])] = p
    (wafer,) = read(lot2)
    d = wafer.dies
    got = {
        (x, y): (h, s, ok)
        for x, y, h, s, ok in zip(
            d.x.tolist(),
            d.y.tolist(),
            d.hard_bin.tolist(),
            d.soft_bin.tolist(),
            d.passed.tolist(),
            strict=True,
        )
    }
    assert wafer.die_count == 1456
    # PART_FLG bit 4 is clear in every PRR of this file, so bit 3 decides pass/fail.
    assert all(p[2] & 0x10 == 0 for p in parts)
    assert got == {xy: (p[3], p[4], p[2] & 0x08 == 0) for xy, p in last.items()}
    assert wafer.bin_counts("hard")[1] == sum(1 for p in last.values() if p[3] == 1)
    assert any("113 dies tested more than once" in n for n in wafer.notes)
    assert not wafer.partial


def test_lot2_identity_time_and_orientation(lot2: bytes) -> None:
    o = order_of(lot2)
    recs = {(t, s): (off, body) for off, t, s, body in records(lot2)}
    wir_off, wir = recs[(2, 10)]
    _, wcr = recs[(2, 30)]
    _, mir = recs[(1, 10)]
    (wafer,) = read(lot2)
    assert wafer.info.wafer_id == cn_at(wir, 6) == "GAL-LOT-02"
    assert wafer.info.lot_id == cn_at(mir, 15) == "GAL-LOT"
    assert wafer.info.part_type == "GOLD8BAR"
    assert wafer.info.tester_id == "galaxy-t"
    assert wafer.info.program == "mobile-05"
    start = struct.unpack_from(o + "I", wir, 2)[0]
    assert wafer.info.start_time == datetime(1970, 1, 1) + timedelta(seconds=start)
    assert wafer.provenance.offset == wir_off
    assert wafer.provenance.format == "stdf"
    # WCR: WF_FLAT at body byte 13, CENTER_X/Y at 14/16, POS_X/POS_Y at 18/19.
    assert wcr[13:14] == b"D" and wcr[18:20] == b"RU"
    assert struct.unpack_from(o + "hh", wcr, 14) == (128, 128)
    assert wafer.orientation.mark is Side.DOWN
    assert wafer.orientation.x_increases is Side.RIGHT
    assert wafer.orientation.y_increases is Side.UP
    assert (wafer.info.center_x, wafer.info.center_y) == (128, 128)
    assert wafer.info.wafer_size_mm is None  # WAFR_SIZ is 0 (missing) in this file
    assert wafer.info.extra["prober_type"] == "electrogl"
    assert wafer.info.extra["sublot_id"] == "02"


def test_lot2_retest_policies(lot2: bytes) -> None:
    parts = prrs(lot2)
    first: dict[tuple[int, int], tuple[int, ...]] = {}
    best: dict[tuple[int, int], tuple[int, ...]] = {}
    for p in parts:
        xy = (p[5], p[6])
        first.setdefault(xy, p)
        passed = p[2] & 0x08 == 0
        if xy not in best or passed or best[xy][2] & 0x08:
            best[xy] = p

    def by_xy(w: WaferMap) -> dict[tuple[int, int], tuple[int, bool]]:
        d = w.dies
        return {
            (x, y): (h, ok)
            for x, y, h, ok in zip(
                d.x.tolist(), d.y.tolist(), d.hard_bin.tolist(), d.passed.tolist(), strict=True
            )
        }

    (w_first,) = read(lot2, retest=RetestPolicy.FIRST)
    assert by_xy(w_first) == {xy: (p[3], p[2] & 0x08 == 0) for xy, p in first.items()}
    (w_best,) = read(lot2, retest=RetestPolicy.BEST)
    assert by_xy(w_best) == {xy: (p[3], p[2] & 0x08 == 0) for xy, p in best.items()}
    (w_all,) = read(lot2, retest=RetestPolicy.ALL)
    assert list(zip(w_all.dies.x.tolist(), w_all.dies.y.tolist(), strict=True)) == [
        (p[5], p[6]) for p in parts
    ]
    assert w_all.dies.site.tolist() == [p[1] for p in parts]
    assert w_all.dies.head.tolist() == [p[0] for p in parts]


# --------------------------------------------------------------------------- golden: a595
def test_a595_three_wafers(a595: bytes) -> None:
    o = order_of(a595)
    wrrs = [body for _, t, s, body in records(a595) if (t, s) == (2, 20)]
    per_wafer = prrs_per_wafer(a595)
    maps = read(a595)
    assert [m.info.wafer_id for m in maps] == [cn_at(b, 26) for b in wrrs] == ["02", "03", "09"]
    assert [m.die_count for m in maps] == [len(w) for w in per_wafer] == [112, 112, 112]
    good = [struct.unpack_from(o + "I", b, 18)[0] for b in wrrs]  # WRR GOOD_CNT
    assert [m.pass_count for m in maps] == good == [88, 89, 86]
    for m, w in zip(maps, per_wafer, strict=True):
        assert m.dies.x.tolist() == [p[5] for p in w]
        assert m.dies.y.tolist() == [p[6] for p in w]
        assert m.dies.hard_bin.tolist() == [p[3] for p in w]
        assert m.info.wafer_size_mm == 150.0  # WAFR_SIZ 15 in WF_UNITS 2 (cm)
        assert m.orientation.y_increases is Side.DOWN
        assert m.info.extra["soft_bin.10.name"] == "CONT"
        assert m.info.extra["soft_bin.10.pass"] == "false"
        assert m.info.extra["soft_bin.1.pass"] == "true"


def test_a595_matches_the_text_datalog_of_the_same_run(a595: bytes, tester_dir: Path) -> None:
    text = gzip.decompress((tester_dir / "stdf" / "a595_ascii_datalog.data.gz").read_bytes())
    wafers: dict[str, list[tuple[int, int, int]]] = {}
    current = ""
    for line in text.decode("latin-1").splitlines():
        if m := re.match(r"\s*Wafer:\s*(\S+)", line):
            current = m.group(1)
            wafers[current] = []
        elif m := re.search(
            r"Bin:\s*(\d+)\s+Wafer Coordinates:\s*\(\s*(-?\d+)\s*,\s*(-?\d+)", line
        ):
            wafers[current].append((int(m.group(2)), int(m.group(3)), int(m.group(1))))
    maps = read(a595)
    assert sorted(wafers) == sorted(m.info.wafer_id for m in maps)
    for m in maps:
        d = m.dies
        ours = list(zip(d.x.tolist(), d.y.tolist(), d.soft_bin.tolist(), strict=True))
        assert ours == wafers[m.info.wafer_id]  # the datalog's "Bin" is the soft bin


def test_pystdf_agrees_on_every_prr(lot2: bytes, a595: bytes) -> None:
    pytest.importorskip("pystdf")
    import io

    from pystdf.IO import Parser

    for data in (lot2, a595):
        seen: list[tuple[int, ...]] = []

        class Sink:
            def after_send(self, _src: object, rec: tuple[object, list[int]]) -> None:
                if type(rec[0]).__name__ == "Prr":
                    f = rec[1]
                    seen.append((f[0], f[1], f[2], f[4], f[5], f[6], f[7]))  # noqa: B023

        parser = Parser(inp=io.BytesIO(data))
        parser.addSink(Sink())
        parser.parse()
        assert seen == prrs(data)
        all_dies = read(data, retest=RetestPolicy.ALL)
        got = [
            (h, s, x, y)
            for m in all_dies
            for h, s, x, y in zip(
                m.dies.hard_bin.tolist(),
                m.dies.soft_bin.tolist(),
                m.dies.x.tolist(),
                m.dies.y.tolist(),
                strict=True,
            )
        ]
        assert got == [(p[3], p[4], p[5], p[6]) for p in seen]


# --------------------------------------------------------------------------- detection
def test_sniff_accepts_a_far_in_either_byte_order() -> None:
    assert FMT.sniff(b"\x00\x02\x00\x0a\x01\x04")
    assert FMT.sniff(b"\x02\x00\x00\x0a\x02\x04")
    assert FMT.sniff(b"\x02\x00\x00\x0a\x00\x04")  # VAX: detected, then refused with a reason
    assert not FMT.sniff(b"\x00\x02\x00\x14\x01\x04")  # an ATR first is not an STDF start
    assert not FMT.sniff(b"")
    assert not FMT.sniff(b"PK\x03\x04")


def test_the_text_datalog_is_not_taken_for_stdf(tester_dir: Path) -> None:
    path = tester_dir / "stdf" / "a595_ascii_datalog.data.gz"
    with Source.open(path) as source:
        assert not FMT.sniff(source.head)
    with Source.open(tester_dir / "stdf" / "a595.stdf.gz") as source:
        assert FMT.sniff(source.head)


def test_registry_detects_stdf_and_not_the_datalog(tester_dir: Path) -> None:
    from waferscope.protocols.formats import detect, list_formats

    try:
        list_formats()
    except ImportError as exc:  # another format module is still being written
        pytest.skip(f"format registry incomplete: {exc}")
    with Source.open(tester_dir / "stdf" / "lot2.stdf.gz") as source:
        assert detect(source).name == "stdf"
    datalog = tester_dir / "stdf" / "a595_ascii_datalog.data.gz"
    with Source.open(datalog) as source, contextlib.suppress(FormatError):
        assert detect(source).name != "stdf"


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"\x02\x00\x00\x0a\x00\x04", "VAX"),
        (b"\x02\x00\x00\x0a\x07\x04", "CPU_TYPE 7"),
        (b"\x00\x02\x00\x0a\x01\x03", "version 3"),
        (b"\x00\x02\x00\x0a\x02\x04", "other byte order"),
        (b"\x00\x01\x00\x0a\x01", "not a FAR"),
    ],
)
def test_bad_far_is_a_clear_error(head: bytes, words: str) -> None:
    with pytest.raises(FormatError, match=words) as info:
        read(head + bytes(40))
    assert info.value.location.offset == 0
    assert info.value.location.source == "t.stdf"


def test_file_cut_inside_the_far() -> None:
    with pytest.raises(TruncatedError):
        read(b"\x00\x02\x00\x0a\x01")


# --------------------------------------------------------------------------- containers
@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_inputs_read_the_same(a595: bytes, compress: object) -> None:
    expected = read(a595)
    got = read(compress(a595))  # type: ignore[operator]
    assert [m.dies for m in got] == [m.dies for m in expected]
    assert [m.info for m in got] == [m.info for m in expected]


def test_compressed_container_that_ends_early_gives_a_partial_wafer(lot2: bytes) -> None:
    packed = gzip.compress(lot2)
    (wafer,) = read(packed[: len(packed) // 2])
    assert wafer.partial
    assert 0 < wafer.die_count < 1456
    assert any("incomplete" in n for n in wafer.notes)


# --------------------------------------------------------------------------- truncation
def test_truncated_at_many_offsets_keeps_every_complete_part(a595: bytes) -> None:
    recs = records(a595)
    prr_ends = [off + 4 + len(body) for off, t, s, body in recs if (t, s) == (5, 20)]
    last_wrr_end = [off + 4 + len(b) for off, t, s, b in recs if (t, s) == (2, 20)][-1]
    first_wir = next(off for off, t, s, _ in recs if (t, s) == (2, 10))
    cuts = sorted({*range(6, len(a595), len(a595) // 97), first_wir + 3, prr_ends[5] - 1})
    for cut in cuts:
        try:
            maps = read(a595[:cut], retest=RetestPolicy.ALL)
        except TruncatedError:
            assert cut <= first_wir + 20  # only before any wafer started
            continue
        assert sum(m.die_count for m in maps) == sum(1 for e in prr_ends if e <= cut)
        assert not any(m.partial for m in maps[:-1])
        if cut < last_wrr_end:  # the wafer in progress is reported, marked partial
            assert maps[-1].partial, cut
            assert any(f"byte {cut:,}" in n for n in maps[-1].notes), maps[-1].notes
        else:  # every wafer ended before the cut: complete, with a note on the cut
            assert not maps[-1].partial
            assert any(f"byte {cut:,}" in n for n in maps[-1].notes), maps[-1].notes


def test_cut_between_wafers_keeps_complete_wafers(a595: bytes) -> None:
    recs = records(a595)
    second_wrr_end = [off + 4 + len(b) for off, t, s, b in recs if (t, s) == (2, 20)][1]
    maps = read(a595[:second_wrr_end])
    assert [m.partial for m in maps] == [False, False]
    assert [m.die_count for m in maps] == [112, 112]


# --------------------------------------------------------------------------- corrupt data
def test_undefined_record_type_names_the_byte_and_the_record_before(lot2: bytes) -> None:
    recs = records(lot2)
    victim = recs[500]
    previous = recs[499]
    data = bytearray(lot2)
    data[victim[0] + 2] = 99
    with pytest.raises(FormatError) as info:
        read(bytes(data))
    err = info.value
    assert err.location.offset == victim[0]
    assert "REC_TYP 99" in err.reason
    assert f"byte {previous[0]:,}" in err.reason
    assert str(victim[0]) in str(err) or f"{victim[0]:,}" in str(err)


def test_wrong_record_length_is_caught(lot2: bytes) -> None:
    recs = records(lot2)
    off = recs[300][0]
    data = bytearray(lot2)
    data[off : off + 2] = struct.pack(">H", 40_000)
    with pytest.raises(FormatError) as info:
        read(bytes(data))
    assert info.value.location.offset is not None
    assert info.value.location.offset > off


def test_prr_without_its_required_fields_names_the_prr(lot2: bytes) -> None:
    recs = records(lot2)
    prr_offsets = [off for off, t, s, _ in recs if (t, s) == (5, 20)]
    off = prr_offsets[1203]
    # Shrink PRR #1,204 to 3 bytes and pad the rest of it as an (undecoded) GDR, so the
    # stream stays walkable and only the PRR itself is malformed.
    (length,) = struct.unpack_from(">H", lot2, off)
    data = bytearray(lot2)
    data[off : off + 2] = struct.pack(">H", 3)
    data[off + 7 : off + 11] = struct.pack(">HBB", length - 7, 50, 10)
    with pytest.raises(FormatError) as info:
        read(bytes(data))
    assert info.value.location.record == "PRR #1,204"
    assert info.value.location.offset == off
    assert "PRR #1,204" in str(info.value)


def test_string_running_past_its_record_is_an_error(lot2: bytes) -> None:
    recs = records(lot2)
    mir_off = next(off for off, t, s, _ in recs if (t, s) == (1, 10))
    data = bytearray(lot2)
    data[mir_off + 4 + 15] = 250  # LOT_ID claims 250 characters; the MIR holds 96 bytes
    with pytest.raises(FormatError, match="LOT_ID") as info:
        read(bytes(data))
    assert info.value.location.record == "MIR #1"
    assert info.value.location.offset == mir_off


def test_max_dies_is_honoured(lot2: bytes) -> None:
    with pytest.raises(FormatError, match="max_dies"):
        read(lot2, max_dies=1000)
    assert read(lot2, max_dies=1569)[0].die_count == 1456


def test_empty_lot_yields_no_wafer() -> None:
    import io

    from waferscope.protocols.formats.stdf.writer import write_stdf

    buf = io.BytesIO()
    write_stdf([], buf)
    assert read(buf.getvalue()) == []
    assert Counter(t for _, t, _, _ in records(buf.getvalue())) == {0: 1, 1: 3}
