"""TSK / Accretech prober maps: golden values on a real map, every map version, the writer,
truncation, and random/mutated input that must end in a FormatError (never another exception).

Expected values are found independently of the reader: a deliberately dumb decoder below walks
the die records with ``struct`` one die at a time, and synthetic maps are assembled byte by byte
with ``struct.pack_into`` at the offsets of the public map data file manual.
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.klarf.reader import KlarfFormat
from waferscope.protocols.formats.tsk.reader import TskFormat
from waferscope.protocols.wafermap import (
    UNKNOWN,
    DieTable,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

GOLDEN = "tsk/001.QR2352-D5U278-CP-1.gz"
FMT = TskFormat()


def read(data: bytes, name: str = "<tsk>") -> list[WaferMap]:
    return list(FMT.read(Source.from_bytes(data, name), ReadOptions()))


def write(m: WaferMap) -> bytes:
    out = io.BytesIO()
    FMT.write([m], out)
    return out.getvalue()


# --------------------------------------------------------------------------- real map
@pytest.fixture(scope="module")
def golden_bytes(tester_dir: Path) -> bytes:
    path = tester_dir / GOLDEN
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return gzip.decompress(path.read_bytes())


@pytest.fixture(scope="module")
def golden(tester_dir: Path) -> WaferMap:
    with Source.open(tester_dir / GOLDEN) as src:
        maps = list(FMT.read(src, ReadOptions()))
    assert len(maps) == 1
    return maps[0]


def dumb_decode(data: bytes) -> dict[tuple[int, int], int]:
    """(column, row) -> test result (1 pass, 2/3 fail) of every tested die, one at a time."""
    cols, rows = struct.unpack_from(">HH", data, 52)
    (address,) = struct.unpack_from(">I", data, 216)
    tested = {}
    for i in range(cols * rows):
        (word1,) = struct.unpack_from(">H", data, address + 6 * i)
        result = word1 >> 14
        if result:
            tested[(i % cols, i // cols)] = result
    return tested


def test_golden_counts_match_header_and_dumb_decoding(
    golden: WaferMap, golden_bytes: bytes
) -> None:
    cols, rows = struct.unpack_from(">HH", golden_bytes, 52)
    tested, passed, failed = struct.unpack_from(">HHH", golden_bytes, 210)
    assert (cols, rows) == (254, 265)
    assert (tested, passed, failed) == (49_631, 46_927, 2_704)
    dumb = dumb_decode(golden_bytes)
    assert len(dumb) == tested
    assert sum(r == 1 for r in dumb.values()) == passed
    assert golden.die_count == 49_631
    assert golden.fail_count == 2_704
    assert golden.pass_count == 46_927
    assert (golden.info.grid_columns, golden.info.grid_rows) == (254, 265)
    assert not golden.partial
    assert not any("declares" in note for note in golden.notes)  # header counts agree


def test_golden_die_positions_follow_the_records(golden: WaferMap, golden_bytes: bytes) -> None:
    # The header says X grows leftward (byte 104 = 1) and Y backward (byte 105 = 2), and the
    # first die of the map area is (323, 361): X falls by one per column, Y by one per row.
    assert golden_bytes[104:106] == b"\x01\x02"
    assert struct.unpack_from(">ii", golden_bytes, 140) == (323, 361)
    dumb = dumb_decode(golden_bytes)
    by_xy = {
        (int(x), int(y)): bool(p)
        for x, y, p in zip(golden.dies.x, golden.dies.y, golden.dies.passed, strict=True)
    }
    for (col, row), result in list(dumb.items())[::997]:
        assert by_xy[(323 - col, 361 - row)] == (result == 1)
    assert golden.orientation == Orientation(
        mark=Side.DOWN, mark_kind=None, x_increases=Side.LEFT, y_increases=Side.UP
    )


def test_golden_header_info(golden: WaferMap) -> None:
    info = golden.info
    assert info.wafer_size_mm == 200.0  # code 80 = 8.0 inch
    assert info.wafer_id == "QR2352-D5U278-CP-1"
    assert info.lot_id == "QR2352-D5U278-CP"
    assert info.part_type == "QR2352-8D2-4"
    assert (info.die_width_um, info.die_height_um) == (786.0, 750.0)
    assert info.start_time is not None and info.start_time.isoformat() == "2014-06-11T13:29:00"
    assert info.end_time is not None and info.end_time.isoformat() == "2014-06-11T20:49:00"
    assert (info.center_x, info.center_y) == (196, 229)
    assert info.extra["map_version"] == "2"
    assert info.extra["slot"] == "1"
    assert golden.provenance.format == "tsk"
    assert golden.provenance.source.endswith(".gz")
    # every tested die holds stored category 0: the map records no bins
    assert set(golden.bin_counts()) == {UNKNOWN}
    assert set(np.unique(golden.dies.site).tolist()) == set(range(8))


def test_golden_shows_an_edge_ring(golden: WaferMap) -> None:
    x = golden.dies.x.astype(float)
    y = golden.dies.y.astype(float)
    r = np.hypot(x - x.mean(), (y - y.mean()) * 750 / 786)
    edge, core = r > 0.92 * r.max(), r < 0.6 * r.max()
    fail = ~golden.dies.passed
    assert fail[edge].mean() > 5 * fail[core].mean()


def test_sniff(golden_bytes: bytes, tester_dir: Path) -> None:
    assert FMT.sniff(golden_bytes[:8192])
    assert not KlarfFormat().sniff(golden_bytes[:8192])
    for path in sorted((tester_dir / "klarf").iterdir()):
        assert not FMT.sniff(path.read_bytes()[:8192]), path.name
    for path in sorted((tester_dir / "stdf").glob("*.gz")):
        assert not FMT.sniff(gzip.decompress(path.read_bytes())[:8192]), path.name
    csv = b"x,y,bin,site\n" + b"".join(b"%d,%d,1,0\n" % (i, i) for i in range(100))
    xml = (
        b'<?xml version="1.0"?>\n<MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap">'
        + b" " * 300
    )
    for text in (csv, xml, b"\x00" * 8192, b"", b" " * 236):
        assert not FMT.sniff(text)


def test_golden_round_trip(golden: WaferMap, golden_bytes: bytes) -> None:
    data = write(golden)
    assert len(data) == len(golden_bytes)
    assert data[210:216] == golden_bytes[210:216]
    again = read(data, golden.provenance.source)[0]
    assert again == golden


def test_registry_detects_tsk(tester_dir: Path) -> None:
    from waferscope.protocols import formats

    try:
        formats.list_formats()
    except ImportError as exc:  # other formats not written yet
        pytest.skip(f"format registry incomplete: {exc}")
    maps = list(formats.read_maps(tester_dir / GOLDEN))
    assert [m.provenance.format for m in maps] == ["tsk"]


# --------------------------------------------------------------------------- map versions
def build_tsk(
    version: int,
    cells: list[tuple[int, int, int]],
    *,
    cols: int,
    rows: int,
    config: int = 0,
    extended: list[tuple[int, int]] | None = None,
    first: tuple[int, int] = (10, 20),
    directions: tuple[int, int] = (2, 1),
    counts: tuple[int, int, int] | None = None,
) -> bytes:
    """A map assembled with struct at the manual's offsets. ``cells`` = (result, category,
    site) per cell, row by row; ``extended`` = the two extended-result words per cell."""
    header = bytearray(b" " * 236)
    struct.pack_into(">HHII", header, 36, 60, 7, 500_000, 400_000)  # 6 inch, 5000 x 4000 um
    struct.pack_into(">HBB", header, 48, 90, 0, version)
    struct.pack_into(">HHI", header, 52, cols, rows, 0)
    struct.pack_into("21sB18sHH", header, 60, b"W-07", 1, b"LOT42", 1, 7)
    struct.pack_into(">BBBB", header, 104, *directions, 1, 0)
    header[108:148] = bytes(40)
    struct.pack_into(">ii", header, 140, *first)
    for offset in (148, 160, 172, 184):
        header[offset : offset + 12] = b"2401311530  "
    header[196:236] = bytes(40)
    n_tested = sum(1 for result, _, _ in cells if result)
    n_pass = sum(1 for result, _, _ in cells if result == 1)
    declared = counts or (n_tested, n_pass, n_tested - n_pass)
    struct.pack_into(">HHH", header, 210, *declared)
    struct.pack_into(">HHH", header, 228, config, 64, 64)
    ext_header = bytearray(172)
    struct.pack_into(">III", ext_header, 52, n_tested, n_pass, n_tested - n_pass)
    body = bytearray()
    if version == 1:
        struct.pack_into(">I", header, 216, 236 + 172)
        body += ext_header
        for result, category, site in cells:
            body += bytes([(result << 6) | category, site])
        body += bytes(len(cells))
        return bytes(header + body)
    struct.pack_into(">I", header, 216, 236)
    step_x = 1 if directions[0] == 2 else -1
    step_y = 1 if directions[1] == 1 else -1
    for i, (result, category, site) in enumerate(cells):
        x = first[0] + step_x * (i % cols)
        y = first[1] + step_y * (i // cols)
        word1 = (result << 14) | abs(x)
        word2 = ((1 if result else 0) << 14) | ((x < 0) << 11) | ((y < 0) << 10) | abs(y)
        word3 = (site << 8) | category
        body += struct.pack(">HHH", word1, word2, word3)
    if config & 0b100:  # line category data, 8 bytes per cell
        struct.pack_into(">II", header, 220, len(cells), 236 + len(body))
        body += b"\xee" * (8 * len(cells))
    if config & 0b1000:
        body += ext_header
    if extended is not None:
        for word1, word2 in extended:
            body += struct.pack(">HH", word1, word2)
    return bytes(header + body)


CELLS = [(1, 0, 0), (2, 5, 3), (0, 0, 0), (3, 63, 63), (1, 0, 1), (0, 0, 0)]


def test_version_0_normal() -> None:
    m = read(build_tsk(0, CELLS, cols=3, rows=2))[0]
    assert m.die_count == 4 and m.fail_count == 2
    assert m.dies.x.tolist() == [10, 11, 10, 11]
    assert m.dies.y.tolist() == [20, 20, 21, 21]
    assert m.dies.hard_bin.tolist() == [1, 6, 64, 1]  # stored category + 1
    assert m.dies.site.tolist() == [0, 3, 63, 1]
    assert m.orientation == Orientation(Side.RIGHT, None, Side.RIGHT, Side.DOWN)
    assert m.info.wafer_size_mm == 150.0
    assert (m.info.die_width_um, m.info.die_height_um) == (5000.0, 4000.0)
    assert (m.info.lot_id, m.info.wafer_id) == ("LOT42", "W-07")
    assert m.notes == ()


def test_version_0_leftward_backward_and_negative_coordinates() -> None:
    data = build_tsk(0, CELLS, cols=3, rows=2, first=(1, 0), directions=(1, 2))
    m = read(data)[0]
    assert m.dies.x.tolist() == [1, 0, 1, 0]
    assert m.dies.y.tolist() == [0, 0, -1, -1]
    assert (m.orientation.x_increases, m.orientation.y_increases) == (Side.LEFT, Side.UP)
    assert m.notes == ()


def test_version_1_two_byte_records() -> None:
    m = read(build_tsk(1, CELLS, cols=3, rows=2))[0]
    assert m.die_count == 4 and m.fail_count == 2
    assert m.dies.x.tolist() == [10, 11, 10, 11]
    assert m.dies.hard_bin.tolist() == [1, 6, 64, 1]
    assert m.dies.site.tolist() == [0, 3, 63, 1]
    assert not m.partial


@pytest.mark.parametrize(
    ("version", "words", "site", "category"),
    [
        (2, (100 << 8 | 200, 0), 100, 200),
        (3, (7 << 8 | 255, 0), 7, 255),
        (4, (300, 1000), 300, 1000),
        (7, (2000, 9000), 2000, 9000),
    ],
)
def test_extended_results(version: int, words: tuple[int, int], site: int, category: int) -> None:
    cells = [(1, 0, 0), (2, 1, 1)]
    data = build_tsk(version, cells, cols=2, rows=1, config=0b11011, extended=[(0, 0), words])
    m = read(data)[0]
    assert m.dies.site.tolist() == [0, site]
    assert m.dies.hard_bin.tolist() == [1, category + 1]
    assert m.notes == ()


def test_line_category_data_is_skipped() -> None:
    cells = [(1, 0, 0), (2, 1, 1)]
    data = build_tsk(4, cells, cols=2, rows=1, config=0b11111, extended=[(0, 0), (300, 1000)])
    m = read(data)[0]
    assert m.dies.site.tolist() == [0, 300]
    assert m.dies.hard_bin.tolist() == [1, 1001]
    assert m.notes == ()  # the extension header was found: its counts agree


def test_undocumented_extended_results_fall_back_to_the_basic_record() -> None:
    cells = [(1, 2, 3), (2, 4, 5)]
    data = build_tsk(5, cells, cols=2, rows=1, config=0b11011, extended=[(9, 9), (9, 9)])
    m = read(data)[0]
    assert m.dies.hard_bin.tolist() == [3, 5]
    assert m.dies.site.tolist() == [3, 5]
    assert any("not publicly documented" in note for note in m.notes)


def test_count_mismatch_is_a_note() -> None:
    m = read(build_tsk(0, CELLS, cols=3, rows=2, counts=(9, 8, 1)))[0]
    assert m.die_count == 4
    assert any("header declares 9 tested" in note for note in m.notes)


def test_inconsistent_record_coordinates_fall_back_to_the_header() -> None:
    data = bytearray(build_tsk(0, CELLS, cols=3, rows=2))
    struct.pack_into(">H", data, 236 + 6, (2 << 14) | 77)  # die 1: X = 77 instead of 11
    m = read(bytes(data))[0]
    assert m.dies.x.tolist() == [10, 11, 10, 11]
    assert any("do not follow the map grid" in note for note in m.notes)


# --------------------------------------------------------------------------- truncation
def test_cut_inside_the_header_raises() -> None:
    data = build_tsk(0, CELLS, cols=3, rows=2)
    for cut in (0, 1, 100, 235):
        with pytest.raises(TruncatedError) as info:
            read(data[:cut], "cut.tsk")
        assert info.value.location.offset == cut
        assert "cut.tsk" in str(info.value)


def test_cut_inside_the_die_records_gives_a_partial_wafer() -> None:
    data = build_tsk(0, CELLS, cols=3, rows=2)
    m = read(data[: 236 + 6 * 4 + 3])[0]  # four whole records and half of the fifth
    assert m.partial
    assert m.die_count == 3  # cells 0, 1 and 3 are tested
    assert any("4 of 6 die records" in note for note in m.notes)


def test_cut_inside_the_extension_gives_a_partial_but_whole_wafer() -> None:
    cells = [(1, 0, 0), (2, 1, 1)]
    data = build_tsk(2, cells, cols=2, rows=1, config=0b11011, extended=[(0, 0), (5 << 8 | 9, 0)])
    for cut in (236 + 12 + 50, len(data) - 2):
        m = read(data[:cut])[0]
        assert m.partial
        assert m.die_count == 2
        assert m.dies.hard_bin.tolist() == [1, 2]  # basic categories kept


def test_truncated_gzip_container(tester_dir: Path) -> None:
    raw = (tester_dir / GOLDEN).read_bytes()
    with Source.from_bytes(raw[: len(raw) // 2], "half.gz") as src:
        maps = list(FMT.read(src, ReadOptions()))
    assert maps[0].partial
    assert 0 < maps[0].die_count < 49_631
    assert any("compressed container" in note for note in maps[0].notes)


# --------------------------------------------------------------------------- writer
def test_writer_refuses_several_wafers() -> None:
    m = read(build_tsk(0, CELLS, cols=3, rows=2))[0]
    with pytest.raises(FormatError):
        FMT.write([m, m], io.BytesIO())


DiesDraw = tuple[list[tuple[int, int]], list[bool], list[int], list[int]]


@st.composite
def dies_strategy(draw: st.DrawFn) -> DiesDraw:
    """Unique dies with bins/sites sized to need map version 2, 2 + extended, 4 or 7."""
    n = draw(st.integers(1, 60))
    top_bin, top_site = draw(st.sampled_from([(64, 63), (256, 255), (1024, 511), (9999, 2000)]))
    coordinate = st.integers(-120, 120)
    xy = draw(st.lists(st.tuples(coordinate, coordinate), min_size=n, max_size=n, unique=True))
    passed = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    bins = draw(st.lists(st.integers(2, top_bin), min_size=n, max_size=n))
    sites = draw(st.lists(st.integers(0, top_site), min_size=n, max_size=n))
    return xy, passed, bins, sites


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dies=dies_strategy(),
    x_side=st.sampled_from([Side.LEFT, Side.RIGHT]),
    y_side=st.sampled_from([Side.UP, Side.DOWN]),
    mark=st.sampled_from(list(Side)),
)
def test_write_read_round_trip(
    dies: DiesDraw,
    x_side: Side,
    y_side: Side,
    mark: Side,
) -> None:
    xy, passed, bins, sites = dies
    m = WaferMap(
        dies=DieTable.build(
            x=[p[0] for p in xy], y=[p[1] for p in xy], passed=passed, hard_bin=bins, site=sites
        ),
        provenance=Provenance(source="sim", format="tsk"),
        info=WaferInfo(lot_id="L1", wafer_id="W1", die_width_um=1234.5, wafer_size_mm=300.0),
        orientation=Orientation(mark=mark, x_increases=x_side, y_increases=y_side),
    )
    back = read(write(m))[0]
    order_in = np.lexsort((m.dies.x, m.dies.y))
    order_out = np.lexsort((back.dies.x, back.dies.y))
    assert back.dies.take(order_out) == m.dies.take(order_in)
    assert back.orientation == m.orientation
    assert (back.info.lot_id, back.info.wafer_id) == ("L1", "W1")
    assert back.info.die_width_um == 1234.5
    assert back.info.wafer_size_mm == 300.0
    assert back.notes == ()


def test_writer_keeps_large_coordinates_through_the_header() -> None:
    m = WaferMap(
        dies=DieTable.build(x=[1000, 1001], y=[-900, -900], passed=[True, False], hard_bin=[1, 2]),
        provenance=Provenance(source="sim", format="tsk"),
    )
    back = read(write(m))[0]
    assert back.dies.x.tolist() == [1000, 1001]
    assert back.dies.y.tolist() == [-900, -900]


# --------------------------------------------------------------------------- hostile input
def assert_only_format_errors(data: bytes) -> None:
    try:
        maps = read(data, "fuzz.tsk")
    except FormatError as exc:
        message = str(exc)
    else:
        for m in maps:
            m.to_json()
        return
    assert "fuzz.tsk" in message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_raise_format_error(data: bytes) -> None:
    assert isinstance(FMT.sniff(data), bool)
    assert_only_format_errors(data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 404_268)),
)
def test_mutated_real_map_raises_only_format_errors(
    golden_bytes: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(golden_bytes)
    for offset, value in edits:
        data[offset] = value
    assert_only_format_errors(bytes(data[:cut]))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 2 * 236 + 6 * 64))
def test_truncated_synthetic_maps(cut: int) -> None:
    cells = [(1 + (i % 3 == 0), i % 64, i % 7) for i in range(64)]
    for version, config, extended in ((0, 0, None), (1, 0, None), (4, 0b11011, [(1, 2)] * 64)):
        data = build_tsk(version, cells, cols=8, rows=8, config=config, extended=extended)
        assert_only_format_errors(data[:cut])
