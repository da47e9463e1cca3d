"""KLARF 1.1 / 1.2 / 1.8: golden values on real files, rasterisation, orientation and units,
and hostile input that must end in a FormatError naming the line (never another exception).

Expected defect counts come from a deliberately dumb count of the files' text (data lines of
each DefectList, ``Data N`` declarations of 1.8 lists), not from the reader.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.klarf.reader import KlarfFormat
from waferscope.protocols.formats.tsk.reader import TskFormat
from waferscope.protocols.wafermap import MarkKind, Side, WaferMap

FMT = KlarfFormat()
SAMPLES = (
    "CPS3TwithoutReview.001",
    "impro02_QUU_NUU.000",
    "impro02_klarf_no_defect.000",
    "jklarf_klarf12DefectListExample.klarf",
    "jklarf_klarf12Example.klarf",
    "jklarf_klarfWithImagelist.klarf",
    "jklarf_simple12.klarf",
    "jklarf_simple18.klarf",
    "jklarf_wierdKlarfWithNAs.klarf",
)


def read(data: bytes, name: str = "<klarf>") -> list[WaferMap]:
    return list(FMT.read(Source.from_bytes(data, name), ReadOptions()))


@pytest.fixture(scope="module")
def klarf_dir(tester_dir: Path) -> Path:
    path = tester_dir / "klarf"
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def load(klarf_dir: Path, name: str) -> tuple[bytes, list[WaferMap]]:
    data = (klarf_dir / name).read_bytes()
    with Source.open(klarf_dir / name) as src:
        return data, list(FMT.read(src, ReadOptions()))


def dumb_defect_ids_v1(text: str) -> list[list[str]]:
    """Per wafer, the first value of every DefectList data line with >= 6 values."""
    wafers: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        words = line.replace(";", " ").split()
        if line.startswith("WaferID"):
            wafers.append([])
        if line.startswith("DefectList"):
            inside = not line.rstrip().endswith(";")
            continue
        if inside and len(words) >= 6:
            wafers[-1].append(words[0])
        if inside and line.rstrip().endswith(";"):
            inside = False
    return wafers


# --------------------------------------------------------------------------- golden files
@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_is_sniffed_and_read(klarf_dir: Path, name: str) -> None:
    data, maps = load(klarf_dir, name)
    assert FMT.sniff(data[:8192])
    assert not TskFormat().sniff(data[:8192])
    assert maps
    for index, m in enumerate(maps):
        assert m.provenance.format == "klarf"
        assert m.provenance.wafer_index == index
        assert m.provenance.source.endswith(name)
        assert m.provenance.line is not None
        assert int(m.dies.defect_count.sum()) == len(m.defects)
        assert np.array_equal(m.dies.passed, m.dies.defect_count == 0)
        assert (m.orientation.x_increases, m.orientation.y_increases) == (Side.RIGHT, Side.UP)
        assert m.orientation.mark == Side.DOWN
        m.to_json()


@pytest.mark.parametrize(
    "name",
    [n for n in SAMPLES if not n.endswith(("18.klarf", "NAs.klarf", "Imagelist.klarf"))],
)
def test_defect_ids_match_a_dumb_line_count(klarf_dir: Path, name: str) -> None:
    data, maps = load(klarf_dir, name)
    expected = dumb_defect_ids_v1(data.decode("latin-1"))
    assert [[str(d.defect_id) for d in m.defects] for m in maps] == expected


def test_cps3t_klarf_1_1(klarf_dir: Path) -> None:
    data, (m,) = load(klarf_dir, "CPS3TwithoutReview.001")
    text = data.decode("latin-1")
    plan = int(re.search(r"^SampleTestPlan (\d+)", text, re.M)[1])  # type: ignore[index]
    summary = re.search(r"SummaryList\s+1 (\d+) [\d.]+ (\d+) (\d+);", text)
    assert summary is not None
    ndefect, ndie, ndefdie = (int(g) for g in summary.groups())
    assert (plan, ndefect, ndie, ndefdie) == (4988, 16, 4988, 15)
    assert m.info.extra["file_version"] == "1.1"
    assert len(m.defects) == ndefect
    assert m.die_count == ndie  # every defect lies on a planned die
    assert m.fail_count == ndefdie
    assert (m.info.lot_id, m.info.wafer_id, m.info.program) == ("HJU008", "25", "03R3")
    assert m.info.tester_id == "AMAT COMPLUS 3T HYCPS04"
    assert m.info.wafer_size_mm == 200.0
    assert (m.info.die_width_um, m.info.die_height_um) == (2489.96, 2259.92)
    assert m.info.start_time is not None and m.info.start_time.isoformat() == "2021-10-19T10:04:09"
    assert m.orientation.mark_kind == MarkKind.NOTCH
    first = m.defects[0]
    assert (first.defect_id, first.die_x, first.die_y) == (1, -35, -9)
    assert (first.x_um, first.y_um) == (552.64, 1043.08)
    assert first.class_code == 0
    assert first.attributes["CLASSNAME"] == "Undefined"
    # two defects (11 and 12) share die (15, -35)
    two = (m.dies.x == 15) & (m.dies.y == -35)
    assert m.dies.defect_count[two].tolist() == [2]
    assert m.notes == ()


def test_impro02_three_wafers_without_test_plan(klarf_dir: Path) -> None:
    _, maps = load(klarf_dir, "impro02_QUU_NUU.000")
    assert [m.info.wafer_id for m in maps] == ["02", "06", "01"]
    for m in maps:
        dies = {(d.die_x, d.die_y) for d in m.defects}
        assert m.die_count == len(dies)
        assert m.fail_count == m.die_count
        assert any("no SampleTestPlan" in note for note in m.notes)


def test_no_defect_file(klarf_dir: Path) -> None:
    _, (m,) = load(klarf_dir, "impro02_klarf_no_defect.000")
    assert m.defects == ()
    assert m.die_count == 0
    assert any("SummaryList declares 40" in note for note in m.notes)


def test_image_lists_span_lines(klarf_dir: Path) -> None:
    _, (m,) = load(klarf_dir, "jklarf_klarf12DefectListExample.klarf")
    assert [d.defect_id for d in m.defects] == list(range(1, 14))
    lists = {d.defect_id: d.attributes["IMAGELIST"] for d in m.defects}
    assert lists[1] == "1 1 0"
    assert lists[2] == "0"
    assert lists[9] == "1 39 1"  # the pair continues on the next line
    assert lists[11] == "7 1 0 2 0 3 0 4 0 5 0 6 0 7 0"
    assert m.orientation.mark_kind == MarkKind.FLAT
    # SampleTestPlan lists (-2,-1), (0,0), (0,1); defects lie on (1,11) and (1,12)
    assert sorted(zip(m.dies.x.tolist(), m.dies.y.tolist(), strict=True)) == [
        (-2, -1),
        (0, 0),
        (0, 1),
        (1, 11),
        (1, 12),
    ]


def test_klarf_1_8_embedded_image_lists(klarf_dir: Path) -> None:
    data, (m,) = load(klarf_dir, "jklarf_klarfWithImagelist.klarf")
    rows = re.findall(r"^\s+(\d+) -?\d+ -?\d+ (-?\d+) (-?\d+) .*;$", data.decode(), re.M)
    assert [int(r[0]) for r in rows] == [d.defect_id for d in m.defects] == [2, 5, 11, 12, 15, 16]
    assert [(d.die_x, d.die_y) for d in m.defects] == [(int(r[1]), int(r[2])) for r in rows]
    images = {d.defect_id: d.attributes["IMAGEINFO"] for d in m.defects}
    assert images[5] == ""
    assert images[2].startswith("Images 3 a/path/here JPG 1 Patch")
    assert m.info.extra["orientation_mark_location"] == "0"
    assert m.info.extra["wafer_scribe"] == "aWaferScribe"
    assert m.info.extra["file_timestamp"] == "2021-01-01 01:00:00"
    assert m.info.start_time is not None
    assert m.info.start_time.isoformat() == "2000-01-30T15:40:57"


def test_klarf_1_8_records_and_units(klarf_dir: Path) -> None:
    data, maps = load(klarf_dir, "jklarf_simple18.klarf")
    declared = [
        int(n) for n in re.findall(r"List DefectList\s*\{.*?Data (\d+)", data.decode(), re.S)
    ]
    assert declared == [3, 1]
    assert [len(m.defects) for m in maps] == declared
    first, second = maps
    assert (first.info.wafer_id, second.info.wafer_id) == ("FirstWaferId", "SecondWaferId")
    assert first.info.lot_id == "aLot.String"
    assert first.info.extra["file_version"] == "1.8"
    assert first.info.extra["slot"] == "25"
    d = first.defects[0]
    assert (d.defect_id, d.die_x, d.die_y) == (2, 2, 24)
    assert (d.x_um, d.y_um, d.size_um) == (1254.96, 4346.692, 0.325)  # nm -> um
    assert d.class_code == 91
    assert "CLASSNAME" not in d.attributes  # 91 is not in the ClassLookupList
    assert second.defects[0].attributes["CLASSNAME"] == "NV"
    # lot-level fields come after the wafer records in the file, and still apply
    assert first.info.die_width_um == 5744.15
    assert first.info.wafer_size_mm == 300.0
    assert first.info.program == "ARecipe"
    assert first.orientation.mark == Side.DOWN  # OrientationMarkLocation 0
    assert first.orientation.mark_kind == MarkKind.NOTCH
    # two TestRecords: 5 + 4 planned dies, plus the defect dies (2,24), (-3,24), (-2,-27)
    assert first.die_count == 9 + 3
    assert first.fail_count == 3
    assert second.die_count == 1
    assert first.info.start_time is not None
    assert first.info.start_time.isoformat() == "1971-12-11T12:32:22"


def test_na_values(klarf_dir: Path) -> None:
    _, maps = load(klarf_dir, "jklarf_wierdKlarfWithNAs.klarf")
    defects = {d.defect_id: d for d in maps[0].defects}
    assert defects[3].attributes["DBGROUP"] == "NA"
    assert defects[128].attributes["DCIRANGE"] == "NA"
    assert len(maps[0].defects) == 3


def test_gzip_compressed_klarf(klarf_dir: Path) -> None:
    raw = (klarf_dir / "CPS3TwithoutReview.001").read_bytes()
    plain = read(raw)[0]
    packed = read(gzip.compress(raw))[0]
    assert packed.dies == plain.dies
    assert packed.defects == plain.defects


def test_registry_detects_klarf(klarf_dir: Path) -> None:
    from waferscope.protocols import formats

    try:
        formats.list_formats()
    except ImportError as exc:  # other formats not written yet
        pytest.skip(f"format registry incomplete: {exc}")
    for name in SAMPLES:
        with Source.open(klarf_dir / name) as src:
            assert formats.detect(src).name == "klarf", name


# --------------------------------------------------------------------------- synthetic
HEAD = """FileVersion 1 2;
ResultTimestamp 03-04-25 10:11:12;
LotID "L";
SampleSize 1 300;
DeviceID "D";
SetupID "S" 03-04-25 10:00:00;
SampleOrientationMarkType NOTCH;
OrientationMarkLocation RIGHT;
DiePitch 1.0e+04 2.0e+04;
"""
SPEC = "DefectRecordSpec 6 DEFECTID XREL YREL XINDEX YINDEX CLASSNUMBER;\n"


def test_synthetic_rasterisation_and_removed_dies() -> None:
    text = (
        HEAD
        + 'WaferID "A";\nSampleCenterLocation 1.5e+04 -1.0e+03;\n'
        + "SampleTestPlan 4\n 0 0\n 1 0\n 2 0\n 3 0;\n"
        + "RemovedDieList 1 3 0;\n"
        + SPEC
        + "DefectList\n 1 10 10 1 0 7\n 2 20 20 1 0 NA\n 3 30 30 9 9 1;\n"
        + 'WaferID "B";\n'
        + "DefectList\n 1 5 5 0 0 2;\n"
        + "EndOfFile;\n"
    )
    a, b = read(text.encode())
    assert (a.info.wafer_id, b.info.wafer_id) == ("A", "B")
    xy = zip(a.dies.x.tolist(), a.dies.y.tolist(), strict=True)
    counts = dict(zip(xy, a.dies.defect_count.tolist(), strict=True))
    assert counts == {(0, 0): 0, (1, 0): 2, (2, 0): 0, (9, 9): 1}
    assert a.defects[1].class_code is None
    assert a.orientation.mark == Side.RIGHT
    assert (a.info.center_x, a.info.center_y) == (1, -1)
    assert b.info.lot_id == "L"  # lot header shared by the second wafer
    assert b.defects[0].die_x == 0 and b.die_count == 1
    assert b.info.extra["length_unit"] == "um"


def test_missing_end_of_file_marks_the_wafer_partial() -> None:
    (m,) = read((HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 0 0 1;\n").encode())
    assert m.partial
    assert any("EndOfFile" in note for note in m.notes)


def test_defects_without_die_index_are_left_out() -> None:
    text = HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 NA 0 1\n 2 1 1 3 4 1;\nEndOfFile;"
    (m,) = read(text.encode())
    assert [d.defect_id for d in m.defects] == [2]
    assert any("without XINDEX/YINDEX" in note for note in m.notes)


# --------------------------------------------------------------------------- hostile input
def error_line(text: str | bytes) -> int | None:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(FormatError) as info:
        read(data, "bad.klarf")
    assert "bad.klarf" in str(info.value)
    assert info.value.format == "klarf"
    return info.value.location.line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (HEAD + 'WaferID "A";\nSampleTestPlan 1000000000\n 0 0\n 1 1;\nEndOfFile;', 11),
        (HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 0 0 1\n 2 1 1 0 0 1\n", 12),
        (HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 0 0\n 2 1 1 0 0 1;\nEndOfFile;", 12),
        (HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 zero 0 1;\nEndOfFile;", 13),
        (HEAD + 'WaferID "A";\n' + SPEC + "DefectList\n 1 1 1 3e12 0 1;\nEndOfFile;", 13),
        (HEAD + 'WaferID "A";\nDefectList\n 1 1 1 0 0 1;\nEndOfFile;', 11),
        (HEAD + 'WaferID "A;\nEndOfFile;', 10),
        (HEAD + 'ClassLookup 99999\n 0 "x";\nEndOfFile;', 10),
        ('LotID "x";\nEndOfFile;', 1),
        (HEAD + '123 "A";\nEndOfFile;', 10),
    ],
)
def test_malformed_klarf_1_2_names_the_line(text: str, line: int) -> None:
    assert error_line(text) == line


RECORD = """Record FileRecord "1.8"
{
  Record LotRecord "L"
  {
    Record WaferRecord "W"
    {
      List DefectList
      {
        Columns 3 { int32 DEFECTID, int32 XINDEX, int32 YINDEX }
        Data %s
        {
          1 0 0 ;
        }
      }
    }
  }
}
EndOfFile;
"""


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (RECORD % "99999999", 10),
        (RECORD % "1" + "", None),
        ((RECORD % "1").replace("1 0 0 ;", "1 0 ;"), 12),
        ((RECORD % "1").replace("Columns 3", "Columns 4"), 9),
        ((RECORD % "1").split("Record WaferRecord")[0], 3),
        ((RECORD % "1").replace("}\n}\nEndOfFile;", ""), 3),
        ('Record FileRecord "1.8"\n' + "{ Record R\n" * 40, 34),  # depth 33 on line 34
        ((RECORD % "1").replace("Data", "Dada"), 10),
    ],
)
def test_malformed_klarf_1_8_names_the_line(text: str, line: int | None) -> None:
    if line is None:
        (m,) = read(text.encode())
        assert len(m.defects) == 1
        return
    assert error_line(text) == line


def test_binary_garbage_and_long_lines() -> None:
    assert error_line(HEAD.encode() + b"WaferID \x00\x01\x02;") == 10
    assert error_line(HEAD + "StepID " + "x" * 70_000 + ";\nEndOfFile;") == 10
    long_line = HEAD + "StepID " + "1 " * (2_200_000) + ";\nEndOfFile;"
    assert error_line(long_line) == 10
    assert error_line(b"") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    assert isinstance(FMT.sniff(data), bool)
    assert_only_format_errors(data)


def assert_only_format_errors(data: bytes) -> None:
    try:
        maps = read(data, "fuzz.klarf")
    except FormatError as exc:
        message = str(exc)
    else:
        for m in maps:
            assert all(math.isnan(d.x_um) or math.isfinite(d.x_um) for d in m.defects)
            m.to_json()
        return
    assert "fuzz.klarf" in message


@pytest.fixture(scope="module")
def sample_texts(klarf_dir: Path) -> list[bytes]:
    return [(klarf_dir / name).read_bytes() for name in SAMPLES if "CPS3T" not in name]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 7),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(
                [b";", b"{", b"}", b'"', b"NA", b"\n", b"", b"9" * 12, b"Record", b"-"]
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_mutated_real_files_raise_only_format_errors(
    sample_texts: list[bytes], which: int, edits: list[tuple[float, bytes]], cut: float | None
) -> None:
    data = bytearray(sample_texts[which])
    for where, insert in edits:
        at = int(where * len(data))
        data[at : at + len(insert) // 2 + 1] = insert
    if cut is not None:
        data = data[: int(cut * len(data))]
    assert_only_format_errors(bytes(data))
