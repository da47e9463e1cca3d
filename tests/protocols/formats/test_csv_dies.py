"""CSV die lists: sniffing, aliases, grouping, metadata, errors, writer round trips."""

from __future__ import annotations

import contextlib
import gzip
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.csv.reader import CsvFormat
from waferscope.protocols.wafermap import (
    MarkKind,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FMT = CsvFormat()


def read(
    text: str | bytes, fmt: CsvFormat = FMT, retest: RetestPolicy = RetestPolicy.LAST
) -> list[WaferMap]:
    data = text.encode() if isinstance(text, str) else text
    source = Source.from_bytes(data, name="dies.csv")
    return list(fmt.read(source, ReadOptions(retest=retest)))


def dies(wafer: WaferMap) -> list[tuple[int, int, bool, int]]:
    d = wafer.dies
    return list(
        zip(d.x.tolist(), d.y.tolist(), d.passed.tolist(), d.hard_bin.tolist(), strict=True)
    )


def error_of(text: str | bytes, **kwargs: object) -> FormatError:
    with pytest.raises(FormatError) as info:
        read(text, **kwargs)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------ basic reading
BASIC = "x,y,pass,bin\n1,2,1,1\n2,2,0,7\n-3,4,P,1\n"


def test_basic_file_reads_row_by_row() -> None:
    (wafer,) = read(BASIC)
    assert dies(wafer) == [(1, 2, True, 1), (2, 2, False, 7), (-3, 4, True, 1)]
    assert wafer.provenance.format == "csv" and wafer.provenance.line == 2
    assert wafer.dies.soft_bin.tolist() == [-1, -1, -1]
    assert wafer.orientation == Orientation()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|", " ", "   "])
def test_delimiters_are_sniffed(delimiter: str) -> None:
    text = BASIC.replace(",", delimiter)
    assert FMT.sniff(text.encode())
    (wafer,) = read(text)
    assert dies(wafer) == [(1, 2, True, 1), (2, 2, False, 7), (-3, 4, True, 1)]


@pytest.mark.parametrize(
    "header",
    [
        "X,Y,PASS,BIN",
        "col,row,pass_fail,hbin",
        "Die X,Die Y,Result,Hard Bin",
        "die-x,die-y,PF,HardBin",
        "xindex,yindex,passed,hard_bin",
        "X_Coord,Y_Coord,p/f,bin",
    ],
)
def test_header_aliases_are_case_insensitive(header: str) -> None:
    (wafer,) = read(header + "\n" + BASIC.split("\n", 1)[1])
    assert dies(wafer) == [(1, 2, True, 1), (2, 2, False, 7), (-3, 4, True, 1)]


@pytest.mark.parametrize(
    ("good", "bad"),
    [("1", "0"), ("P", "F"), ("pass", "fail"), ("TRUE", "false"), ("Good", "Bad"), ("y", "n")],
)
def test_pass_values(good: str, bad: str) -> None:
    (wafer,) = read(f"x,y,pf\n0,0,{good}\n1,0,{bad}\n")
    assert wafer.dies.passed.tolist() == [True, False]
    assert wafer.dies.hard_bin.tolist() == [-1, -1]


def test_bins_only_bin_1_passes_by_default() -> None:
    (wafer,) = read("x,y,bin\n0,0,1\n1,0,2\n2,0,3\n")
    assert wafer.dies.passed.tolist() == [True, False, False]
    assert "hard bins [1] pass" in wafer.notes[0]


def test_pass_bins_from_a_comment_or_the_constructor() -> None:
    text = "x,y,bin\n0,0,1\n1,0,2\n2,0,3\n"
    (commented,) = read("# pass_bins: 1, 2\n" + text)
    assert commented.dies.passed.tolist() == [True, True, False]
    (built,) = read(text, fmt=CsvFormat(pass_bins={3}))
    assert built.dies.passed.tolist() == [False, False, True]


def test_soft_bins_decide_when_there_is_no_hard_bin() -> None:
    (wafer,) = read("x,y,sbin\n0,0,1\n1,0,5\n")
    assert wafer.dies.passed.tolist() == [True, False]
    assert wafer.dies.soft_bin.tolist() == [1, 5] and "soft bins" in wafer.notes[0]


def test_optional_columns_empty_values_and_ignored_columns() -> None:
    text = (
        "x,y,pass,hard_bin,soft_bin,site,head,defects,comment\n"
        "0,0,1,1,10,3,1,2,ok\n"
        "1,0,0,,,,,,\n"
        '2.0,0,0,8,80,0,1,0,"a, quoted note"\n'
    )
    (wafer,) = read(text)
    d = wafer.dies
    assert d.x.tolist() == [0, 1, 2]
    assert d.hard_bin.tolist() == [1, -1, 8] and d.soft_bin.tolist() == [10, -1, 80]
    assert d.site.tolist() == [3, -1, 0] and d.head.tolist() == [1, -1, 1]
    assert d.defect_count.tolist() == [2, 0, 0]


def test_trailing_delimiters_blank_lines_and_crlf_are_tolerated() -> None:
    (wafer,) = read("x;y;bin;\r\n\r\n0;0;1;\r\n# a remark\r\n1;0;2;;\r\n")
    assert dies(wafer) == [(0, 0, True, 1), (1, 0, False, 2)]


def test_rows_are_grouped_into_wafers_by_lot_and_wafer() -> None:
    text = "lot,wafer,x,y,bin\nA,1,0,0,1\nA,2,0,0,2\nA,1,1,0,2\nB,1,0,0,1\nA,2,1,0,1\n"
    wafers = read(text)
    assert [(w.info.lot_id, w.info.wafer_id) for w in wafers] == [
        ("A", "1"),
        ("A", "2"),
        ("B", "1"),
    ]
    assert [w.die_count for w in wafers] == [2, 2, 1]
    assert dies(wafers[1]) == [(0, 0, False, 2), (1, 0, True, 1)]
    assert [w.provenance.line for w in wafers] == [2, 3, 5]
    assert [w.provenance.wafer_index for w in wafers] == [0, 1, 2]


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        (RetestPolicy.LAST, [(1, 0, False, 5), (0, 0, False, 3)]),
        (RetestPolicy.FIRST, [(0, 0, False, 2), (1, 0, False, 5)]),
        (RetestPolicy.BEST, [(0, 0, True, 1), (1, 0, False, 5)]),
        (RetestPolicy.ALL, [(0, 0, False, 2), (0, 0, True, 1), (1, 0, False, 5), (0, 0, False, 3)]),
    ],
)
def test_retest_policy(policy: RetestPolicy, kept: list[tuple[int, int, bool, int]]) -> None:
    (wafer,) = read("x,y,bin\n0,0,2\n0,0,1\n1,0,5\n0,0,3\n", retest=policy)
    assert dies(wafer) == kept
    assert "retests: 1 dies were listed more than once (2 extra results)" in wafer.notes[-1]


# ------------------------------------------------------------------------ metadata comments
def test_metadata_comments_fill_the_wafer() -> None:
    text = (
        "# waferscope-csv: 1\n"
        "# Lot: L42\n"
        "# wafer-id: 07\n"
        "# tester: T9\n"
        "# program: prog_v2\n"
        "# start_time: 2024-05-01T08:30:00\n"
        "# die_width_um: 812.5\n"
        "# grid_columns: 40\n"
        "# orientation: mark=left, mark_kind=flat, x=left, y=up\n"
        "# labels: Center, Scratch\n"
        "# extra.recipe: R-1\n"
        "# operator: someone\n"
        "# a plain remark without a colon\n"
        "x,y,bin\n0,0,1\n"
    )
    (wafer,) = read(text)
    info = wafer.info
    assert (info.lot_id, info.wafer_id, info.tester_id, info.program) == (
        "L42",
        "07",
        "T9",
        "prog_v2",
    )
    assert info.start_time == datetime(2024, 5, 1, 8, 30)
    assert info.die_width_um == 812.5 and info.grid_columns == 40
    assert dict(info.extra) == {"recipe": "R-1", "operator": "someone"}
    assert wafer.orientation == Orientation(
        mark=Side.LEFT, mark_kind=MarkKind.FLAT, x_increases=Side.LEFT, y_increases=Side.UP
    )
    assert wafer.labels == ("Center", "Scratch")


def test_columns_win_over_comments_for_lot_and_wafer() -> None:
    wafers = read("# lot: FROM-COMMENT\n# wafer: 9\nlot,wafer,x,y,bin\n,1,0,0,1\nL2,,0,0,1\n")
    assert [(w.info.lot_id, w.info.wafer_id) for w in wafers] == [
        ("FROM-COMMENT", "1"),
        ("L2", "9"),
    ]


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        ("# start_time: yesterday", "ISO 8601"),
        ("# die_width_um: -3", "positive"),
        ("# grid_rows: 0", "out of range"),
        ("# center_x: middle", "not an integer"),
        ("# orientation: mark=diagonal", "orientation"),
        ("# orientation: tilt=left", "unknown key"),
        ("# pass_bins: 1, two", "not an integer"),
    ],
)
def test_bad_metadata_names_its_line(comment: str, message: str) -> None:
    err = error_of(f"# lot: A\n{comment}\nx,y,bin\n0,0,1\n")
    assert err.location.line == 2 and message in err.reason


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("x,y,bin\n0,0,1\n1,0\n", 3, "expected 3 fields, found 2"),
        ("x,y,bin\n0,0,1\n1,0,1,9\n", 3, "expected 3 fields, found 4"),
        ("x,y,bin\n0,0,1\nq,0,1\n", 3, "column 'x': 'q' is not an integer"),
        ("X,Y,Bin\n0,0,1\n1,1.5,1\n", 3, "column 'Y': '1.5' is not an integer"),
        ("x,y,bin\n0,0,-4\n", 2, "column 'bin': '-4' is out of range"),
        ("x,y,bin\n0,,1\n", 2, "column 'y': empty value"),
        ("x,y,pass\n0,0,maybe\n", 2, "column 'pass': 'maybe' is not a pass/fail value"),
        ("x,y,bin,site\n0,0,1,99999\n", 2, "column 'site'"),
        ("x,y,bin\n0,0,1\n5000000000,0,1\n", 3, "column 'x'"),
        ("# lot: A\n\nlot number,die,bin\n", 3, "header does not name x, y"),
        ("# only comments\n", 1, "no header line"),
    ],
)
def test_errors_name_line_and_column(text: str, line: int, message: str) -> None:
    err = error_of(text)
    assert err.location.line == line
    assert message in err.reason
    assert err.format == "csv" and str(err).startswith("dies.csv: line ")


def test_non_utf8_text_names_the_line() -> None:
    err = error_of(b"x,y,bin\n0,0,1\n1,0,\xff\n")
    assert err.location.line == 3 and "UTF-8" in err.reason


def test_cut_gzip_stream_marks_the_last_wafer_partial() -> None:
    body = "x,y,bin\n" + "".join(f"{i},0,1\n" for i in range(3000))
    data = gzip.compress(body.encode())
    source = Source.from_bytes(data[: len(data) * 2 // 3], name="dies.csv.gz")
    (wafer,) = FMT.read(source, ReadOptions())
    assert wafer.partial and 0 < wafer.die_count < 3000
    assert any("ended early" in n for n in wafer.notes)


# ------------------------------------------------------------------------ sniffing
@pytest.mark.parametrize(
    "text",
    [
        b"FileVersion 1 1;\nFileTimestamp 10-19-21 10:06:32;\n",
        b"Wafer: 02   Start Time: Mon Dec  2 09:18:54 2002\n\nLot: TEST  Tester: x\n",
        b"<?xml version='1.0'?>\n<MapData/>\n",
        b"hello world\nthis is, just; text\n",
        b"x,y\n1,2\n",
        b"# x,y,bin\n",
        b"\x00\x01x,y,bin\n",
        b"",
    ],
)
def test_sniff_rejects_other_content(text: bytes) -> None:
    assert not FMT.sniff(text)


def test_sniff_accepts_a_bom_and_leading_comments() -> None:
    assert FMT.sniff(b"\xef\xbb\xbf# lot: A\n\n# wafer: 1\nDie_X;Die_Y;Result\n1;2;P\n")


def test_sniff_rejects_the_real_files_of_other_formats(tester_dir: Path) -> None:
    paths = [p for p in tester_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("a595_ascii") for p in paths)
    for path in paths:
        with Source.open(path) as source:
            assert not FMT.sniff(source.head), path.name


# ------------------------------------------------------------------------ writer
def wafer_of(grid: np.ndarray, **kwargs: object) -> WaferMap:
    bins = np.where(np.asarray(grid) == 2, 7, 1)
    return WaferMap.from_dense(
        grid,
        hard_bins=bins,
        provenance=Provenance(source="mem", format="test"),
        **kwargs,  # type: ignore[arg-type]
    )


GRID = np.array([[0, 1, 1], [1, 2, 1], [1, 1, 0]], np.uint8)


def write(maps: list[WaferMap]) -> bytes:
    out = io.BytesIO()
    FMT.write(maps, out)
    return out.getvalue()


def test_single_wafer_round_trips_exactly() -> None:
    info = WaferInfo(
        lot_id="L, 1",
        wafer_id="W7",
        tester_id="T",
        program="P",
        part_type="PT",
        start_time=datetime(2024, 1, 2, 3, 4, 5),
        end_time=datetime(2024, 1, 2, 4, 0),
        wafer_size_mm=200.0,
        die_width_um=1234.5678,
        die_height_um=987.0,
        center_x=1,
        center_y=1,
        grid_columns=3,
        grid_rows=3,
        extra={"recipe": "R-1", "note": "two words"},
    )
    orientation = Orientation(
        mark=Side.RIGHT, mark_kind=MarkKind.NOTCH, x_increases=Side.LEFT, y_increases=Side.UP
    )
    original = wafer_of(GRID, origin=(-1, 4), info=info, orientation=orientation, labels=("Loc",))
    data = write([original])
    assert FMT.sniff(data)
    (back,) = read(data)
    assert back.dies == original.dies
    assert back.info == info and back.orientation == orientation and back.labels == ("Loc",)


def test_optional_die_columns_round_trip() -> None:
    base = wafer_of(GRID)
    n = base.die_count
    dies_ = base.dies
    richer = base.with_(
        dies=type(dies_).build(
            x=dies_.x,
            y=dies_.y,
            passed=dies_.passed,
            hard_bin=np.where(np.arange(n) == 0, -1, dies_.hard_bin),
            soft_bin=np.arange(n) + 100,
            site=np.arange(n) % 4,
            head=np.ones(n),
            defect_count=np.arange(n) % 3,
        )
    )
    text = write([richer]).decode()
    assert "x,y,pass,hard_bin,soft_bin,site,head,defect_count" in text
    (back,) = read(text)
    assert back.dies == richer.dies


def test_several_wafers_round_trip_with_lot_and_wafer_columns() -> None:
    a = wafer_of(GRID, info=WaferInfo(lot_id="L", wafer_id="1", tester_id="T"))
    b = wafer_of(GRID.T, info=WaferInfo(lot_id="L", wafer_id="2", tester_id="T"))
    back = read(write([a, b, a]))
    assert [(w.info.lot_id, w.info.wafer_id) for w in back] == [
        ("L", "1"),
        ("L", "2"),
        ("L", "1#3"),
    ]
    assert [w.info.tester_id for w in back] == ["T", "T", "T"]
    assert back[1].dies == b.dies and back[2].dies == a.dies


def test_writing_leaves_the_callers_stream_open() -> None:
    out = io.BytesIO()
    FMT.write([wafer_of(GRID)], out)
    out.write(b"")  # still usable
    assert out.getvalue().startswith(b"# waferscope-csv: 1\n")


def test_round_trip_of_a_real_wm811k_map(data_dir: Path) -> None:
    from waferscope.protocols.datasets import load_labelled_arrays

    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    grid = arrays.maps[42]
    original = wafer_of(grid, labels=arrays.labels_of(42))
    (back,) = read(write([original]))
    assert back.dies == original.dies and back.labels == original.labels
    assert np.array_equal(back.to_dense(), original.to_dense())


def test_registry_detects_written_files(tmp_path: Path) -> None:
    from waferscope.protocols import formats

    try:
        formats.list_formats()
    except ImportError as exc:  # another format's module is not written yet
        pytest.skip(f"registry incomplete: {exc}")
    path = tmp_path / "dies.txt"
    path.write_bytes(write([wafer_of(GRID)]))
    (back,) = formats.read_maps(path)
    assert back.provenance.format == "csv"


# ------------------------------------------------------------------------ hostile input
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_VALID = write([wafer_of(GRID, info=WaferInfo(lot_id="L", wafer_id="1"))])


@HOSTILE
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    FMT.sniff(data)
    for payload in (data, b"x,y,pass,bin\n" + data):
        with contextlib.suppress(FormatError):
            read(payload)


@HOSTILE
@given(st.text(alphabet="xyXYbinpasPF01-.,;|\t \n#:\"'9", max_size=120))
def test_random_csv_like_text_raises_only_format_errors(text: str) -> None:
    FMT.sniff(text.encode())
    for payload in (text, "x,y,bin\n" + text, "x;y;pass\n" + text):
        with contextlib.suppress(FormatError):
            read(payload)


@HOSTILE
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=4),
    st.integers(0, len(_VALID)),
)
def test_mutated_files_raise_only_format_errors(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for position, value in flips:
        data[position] = value
    for payload in (bytes(data), bytes(data[:cut])):
        with contextlib.suppress(FormatError):
            for wafer in read(payload):
                assert wafer.die_count >= 0
