"""SEMI E142 substrate map XML: reading, hostile input, writing and round trips."""

from __future__ import annotations

import contextlib
import gzip
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.e142.reader import E142_NAMESPACE, E142Format
from waferscope.protocols.wafermap import (
    MarkKind,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FMT = E142Format()


def read(text: str | bytes, **options: int) -> list[WaferMap]:
    data = text.encode() if isinstance(text, str) else text
    return list(FMT.read(Source.from_bytes(data, name="map.xml"), ReadOptions(**options)))


def document(
    rows: list[str],
    *,
    bin_type: str = "HexaDecimal",
    null_bin: str | None = "FF",
    definitions: str = '<BinDefinition BinCode="01" BinQuality="Pass"/>',
    attributes: str = 'OriginLocation="UpperLeft" AxisDirection="DownRight" Orientation="0"',
    namespace: str | None = E142_NAMESPACE,
    layouts: str = "",
) -> str:
    null = "" if null_bin is None else f' NullBin="{null_bin}"'
    xmlns = "" if namespace is None else f' xmlns="{namespace}"'
    codes = "\n".join(f"          <BinCode>{r}</BinCode>" for r in rows)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<MapData{xmlns}>
  {layouts}
  <SubstrateMaps>
    <SubstrateMap SubstrateType="Wafer" SubstrateId="W01" {attributes}>
      <Overlay MapName="Sort">
        <BinCodeMap BinType="{bin_type}"{null}>
          <BinDefinitions>{definitions}</BinDefinitions>
{codes}
        </BinCodeMap>
      </Overlay>
    </SubstrateMap>
  </SubstrateMaps>
</MapData>
"""


def dies(wafer: WaferMap) -> set[tuple[int, int, int, bool]]:
    d = wafer.dies
    return set(zip(d.x.tolist(), d.y.tolist(), d.hard_bin.tolist(), d.passed.tolist(), strict=True))


# ------------------------------------------------------------------------ a full example
FULL = """<?xml version="1.0" encoding="utf-8"?>
<MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap">
  <Layouts>
    <Layout LayoutId="WaferLayout" DefaultUnits="mm" TopLevel="true">
      <Dimension X="1" Y="1"/>
      <ChildLayouts><ChildLayout LayoutId="Devices"/></ChildLayouts>
    </Layout>
    <Layout LayoutId="Devices" DefaultUnits="mm">
      <Dimension X="4" Y="3"/>
      <DeviceSize X="2.5" Y="1.25"/>
      <ProductId>PART-9</ProductId>
    </Layout>
  </Layouts>
  <Substrates>
    <Substrate SubstrateType="Wafer" SubstrateId="LOT7-03">
      <LotId>LOT7</LotId>
    </Substrate>
  </Substrates>
  <SubstrateMaps>
    <SubstrateMap SubstrateType="Wafer" SubstrateId="LOT7-03"
        LayoutSpecifier="WaferLayout/Devices" SubstrateSide="TopSide"
        Orientation="180" OriginLocation="LowerLeft" AxisDirection="UpRight">
      <Overlay MapName="SortMap" MapVersion="2">
        <ReferenceDevices>
          <ReferenceDevice Name="FirstDevice"><Coordinates X="1" Y="0"/></ReferenceDevice>
        </ReferenceDevices>
        <BinCodeMap BinType="HexaDecimal" NullBin="FF" MapType="2DArray">
          <BinDefinitions>
            <BinDefinition BinCode="01" BinCount="6" BinQuality="Pass" BinDescription="Good"/>
            <BinDefinition BinCode="0A" BinCount="1" BinQuality="Fail" BinDescription="Leakage"/>
          </BinDefinitions>
          <BinCode>FF0101FF</BinCode>
          <BinCode>01010A01</BinCode>
          <BinCode><![CDATA[
              FF01FFFF
          ]]></BinCode>
        </BinCodeMap>
      </Overlay>
    </SubstrateMap>
  </SubstrateMaps>
</MapData>
"""


def test_full_example_reads_as_worked_out_by_hand() -> None:
    (wafer,) = read(FULL)
    # LowerLeft origin, y growing up: the bottom row is y = 0, the top row y = 2.
    assert dies(wafer) == {
        (1, 2, 1, True), (2, 2, 1, True),
        (0, 1, 1, True), (1, 1, 1, True), (2, 1, 10, False), (3, 1, 1, True),
        (1, 0, 1, True),
    }  # fmt: skip
    assert wafer.orientation == Orientation(
        mark=Side.UP, mark_kind=MarkKind.NOTCH, x_increases=Side.RIGHT, y_increases=Side.UP
    )
    info = wafer.info
    assert (info.lot_id, info.wafer_id, info.part_type) == ("LOT7", "LOT7-03", "PART-9")
    assert (info.die_width_um, info.die_height_um) == (2500.0, 1250.0)
    assert (info.grid_columns, info.grid_rows) == (4, 3)
    assert info.extra["bin_names"] == '{"1": "Good", "10": "Leakage"}'
    assert info.extra["reference_devices"] == '{"FirstDevice": "1,0"}'
    assert wafer.provenance.format == "e142" and wafer.provenance.line == 20
    assert wafer.notes == ()


def test_sniff_accepts_e142_and_rejects_other_xml_and_text() -> None:
    assert FMT.sniff(FULL.encode())
    assert FMT.sniff(document(["01"], namespace=None).encode())
    assert FMT.sniff(b"\xef\xbb\xbf" + FULL.encode())
    assert FMT.sniff(FULL.encode("utf-16"))
    assert not FMT.sniff(b"<html><body>MapData</body></html>"[:6] + b"x")
    assert not FMT.sniff(b"<?xml version='1.0'?><svg/>")
    assert not FMT.sniff(b"x,y,bin\n1,2,1\n")
    assert not FMT.sniff(b"FileVersion 1 1;\nMapData\n")


def test_utf16_document_is_read() -> None:
    (wafer,) = read(FULL.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16"))
    assert wafer.die_count == 7


def test_sniff_rejects_the_real_files_of_other_formats(tester_dir: Path) -> None:
    paths = [p for p in tester_dir.rglob("*") if p.is_file()]
    assert paths
    for path in paths:
        with Source.open(path) as source:
            assert not FMT.sniff(source.head), path.name


# ------------------------------------------------------------------------ axes and orientation
RASTER = ["010203", "040506"]  # A B C / D E F as bins 1..6
ALL_PASS = "".join(f'<BinDefinition BinCode="0{b}" BinQuality="Pass"/>' for b in range(1, 7))


@pytest.mark.parametrize(
    ("origin", "axis", "expected"),
    [
        (
            "UpperLeft",
            "DownRight",
            {1: (0, 0), 2: (1, 0), 3: (2, 0), 4: (0, 1), 5: (1, 1), 6: (2, 1)},
        ),
        (
            "LowerLeft",
            "UpRight",
            {4: (0, 0), 5: (1, 0), 6: (2, 0), 1: (0, 1), 2: (1, 1), 3: (2, 1)},
        ),
        (
            "UpperRight",
            "DownLeft",
            {3: (0, 0), 2: (1, 0), 1: (2, 0), 6: (0, 1), 5: (1, 1), 4: (2, 1)},
        ),
        (
            "LowerRight",
            "UpLeft",
            {6: (0, 0), 5: (1, 0), 4: (2, 0), 3: (0, 1), 2: (1, 1), 1: (2, 1)},
        ),
        ("Center", "UpRight", {5: (0, 0), 4: (-1, 0), 6: (1, 0), 1: (-1, 1), 2: (0, 1), 3: (1, 1)}),
        (
            "UpperLeft",
            "UpRight",
            {1: (0, 0), 2: (1, 0), 3: (2, 0), 4: (0, -1), 5: (1, -1), 6: (2, -1)},
        ),
    ],
)
def test_origin_and_axis_direction(
    origin: str, axis: str, expected: dict[int, tuple[int, int]]
) -> None:
    attributes = f'OriginLocation="{origin}" AxisDirection="{axis}"'
    (wafer,) = read(document(RASTER, definitions=ALL_PASS, attributes=attributes))
    got = {b: (x, y) for x, y, b, _ in dies(wafer)}
    assert got == expected
    assert wafer.orientation.x_increases is (Side.RIGHT if "Right" in axis else Side.LEFT)
    assert wafer.orientation.y_increases is (Side.DOWN if "Down" in axis else Side.UP)


def test_defaults_are_lower_left_and_up_right() -> None:
    (wafer,) = read(document(RASTER, definitions=ALL_PASS, attributes=""))
    assert {b: (x, y) for x, y, b, _ in dies(wafer)}[4] == (0, 0)
    assert wafer.orientation.mark is None and wafer.orientation.mark_kind is None


@pytest.mark.parametrize(
    ("value", "side"),
    [("0", Side.DOWN), ("90", Side.LEFT), ("180", Side.UP), ("270", Side.RIGHT),
     ("-90", Side.RIGHT), ("360", Side.DOWN), ("Downward", Side.DOWN), ("Left", Side.LEFT)],
)  # fmt: skip
def test_orientation_degrees_name_the_notch_side(value: str, side: Side) -> None:
    (wafer,) = read(document(["01"], attributes=f'Orientation="{value}"'))
    assert wafer.orientation.mark is side


def test_odd_orientation_is_noted_and_nonsense_is_an_error() -> None:
    (wafer,) = read(document(["01"], attributes='Orientation="45"'))
    assert wafer.orientation.mark is None and "quarter turn" in wafer.notes[0]
    with pytest.raises(FormatError, match="Orientation") as info:
        read(document(["01"], attributes='Orientation="sideways"'))
    assert info.value.location.line == 5
    with pytest.raises(FormatError, match="AxisDirection"):
        read(document(["01"], attributes='AxisDirection="4"'))


def test_bottom_side_maps_are_mirrored_into_the_front_view() -> None:
    attributes = 'SubstrateSide="BottomSide" Orientation="90" AxisDirection="UpRight"'
    (wafer,) = read(document(["01"], attributes=attributes))
    assert wafer.orientation.mark is Side.RIGHT
    assert wafer.orientation.x_increases is Side.LEFT
    assert any("bottom side" in n for n in wafer.notes)


# ------------------------------------------------------------------------ bin types
def test_ascii_codes_are_code_points() -> None:
    text = document(
        ["..1X", ".11."],
        bin_type="ASCII",
        null_bin=".",
        definitions='<BinDefinition BinCode="1" BinQuality="Pass"/>'
        '<BinDefinition BinCode="X" BinQuality="Fail"/>',
    )
    (wafer,) = read(text)
    assert dies(wafer) == {(2, 0, 49, True), (3, 0, 88, False), (1, 1, 49, True), (2, 1, 49, True)}


def test_decimal_codes_fixed_width_and_blank_separated() -> None:
    defs = (
        '<BinDefinition BinCode="001" BinQuality="Pass"/>'
        '<BinDefinition BinCode="012" BinQuality="Fail"/>'
    )
    (fixed,) = read(document(["000001012"], bin_type="Decimal", null_bin="000", definitions=defs))
    assert dies(fixed) == {(1, 0, 1, True), (2, 0, 12, False)}
    (spaced,) = read(document(["0 1 12"], bin_type="Decimal", null_bin="0", definitions=defs))
    assert dies(spaced) == dies(fixed)


def test_integer2_codes_are_four_hex_digits() -> None:
    defs = '<BinDefinition BinCode="0001" Pick="true"/><BinDefinition BinCode="010F" Pick="false"/>'
    (wafer,) = read(
        document(["FFFF0001010F"], bin_type="Integer2", null_bin="FFFF", definitions=defs)
    )
    assert dies(wafer) == {(1, 0, 1, True), (2, 0, 271, False)}


def test_without_bin_definitions_bin_1_passes() -> None:
    (wafer,) = read(document(["010203"], definitions=""))
    assert dies(wafer) == {(0, 0, 1, True), (1, 0, 2, False), (2, 0, 3, False)}
    assert any("bin code 1" in n for n in wafer.notes)


def test_bin_count_mismatch_is_noted() -> None:
    defs = '<BinDefinition BinCode="01" BinCount="5" BinQuality="Pass"/>'
    (wafer,) = read(document(["0101"], definitions=defs))
    assert any("BinCount" in n and "holds 2" in n for n in wafer.notes)


def test_coordinate_maps_place_each_die() -> None:
    text = document([], definitions='<BinDefinition BinCode="01" BinQuality="Pass"/>'
                    '<BinDefinition BinCode="02" BinQuality="Fail"/>')  # fmt: skip
    text = text.replace(
        "</BinDefinitions>",
        '</BinDefinitions><BinCode X="5" Y="-2">01</BinCode><BinCode X="6" Y="-2">02</BinCode>'
        '<BinCode X="7" Y="-2">FF</BinCode>',
    )
    (wafer,) = read(text)
    assert dies(wafer) == {(5, -2, 1, True), (6, -2, 2, False)}


def test_namespaces_wrappers_and_several_wafers() -> None:
    two = document(["01"], namespace="urn:semi-org:xsd.E142-1.V0805.SubstrateMap").replace(
        "</SubstrateMaps>",
        '<SubstrateMap SubstrateType="Wafer" SubstrateId="W02"><Overlay MapName="Ids"/>'
        "</SubstrateMap>"
        '<SubstrateMap SubstrateType="Wafer" SubstrateId="W03"><Overlay>'
        '<BinCodeMap BinType="HexaDecimal" NullBin="FF"><BinCode>FF01</BinCode></BinCodeMap>'
        "</Overlay></SubstrateMap></SubstrateMaps>",
    )
    wafers = read(two)
    assert [w.info.wafer_id for w in wafers] == ["W01", "W03"]
    assert [w.provenance.wafer_index for w in wafers] == [0, 1]
    wrapped = (
        '<Transaction Name="MapDownload">'
        + document(["01"], namespace=None).split("?>", 1)[1]
        + "</Transaction>"
    )
    assert read(wrapped)[0].die_count == 1


# ------------------------------------------------------------------------ errors naming the line
def error_of(text: str | bytes, **options: int) -> FormatError:
    with pytest.raises(FormatError) as info:
        read(text, **options)
    return info.value


def test_row_of_wrong_length_names_its_line() -> None:
    err = error_of(document(["0101", "01", "0101"]))
    assert err.location.line == 10 and "1 bin codes" in err.reason


def test_odd_number_of_hex_digits_names_its_line() -> None:
    err = error_of(document(["0101", "010"]))
    assert err.location.line == 10 and "3 characters" in err.reason


def test_unknown_bin_code_names_line_and_column() -> None:
    err = error_of(document(["0101", "0107"]))
    assert err.location.line == 10
    assert "'07'" in err.reason and "column 2" in err.reason


def test_invalid_hex_digit_names_line_and_column() -> None:
    err = error_of(document(["01G1"]))
    assert err.location.line == 9 and "'G1'" in err.reason and "column 2" in err.reason


def test_dimension_mismatch_is_an_error() -> None:
    layouts = '<Layouts><Layout LayoutId="D"><Dimension X="3" Y="1"/></Layout></Layouts>'
    text = document(["0101"], layouts=layouts, attributes='LayoutSpecifier="W/D"')
    err = error_of(text)
    assert "Dimension X says 3" in err.reason and err.location.line == 9
    rows = document(
        ["010101"], layouts=layouts.replace('Y="1"', 'Y="2"'), attributes='LayoutSpecifier="W/D"'
    )
    err = error_of(rows)
    assert "Dimension Y says 2" in err.reason and err.location.line == 7


def test_unknown_bin_type_and_missing_map() -> None:
    assert "BinType" in error_of(document(["01"], bin_type="Octal")).reason
    no_map = '<MapData xmlns="urn:x"><SubstrateMaps><SubstrateMap/></SubstrateMaps></MapData>'
    assert "no SubstrateMap" in error_of(no_map).reason
    assert "not an E142" in error_of("<Other><Thing/></Other>").reason


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE MapData [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<MapData>&lol3;</MapData>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE MapData [ <!ENTITY secret SYSTEM "file:///etc/hostname"> ]>
<MapData><SubstrateMaps>&secret;</SubstrateMaps></MapData>
"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_dtds_and_entities_are_refused(text: str) -> None:
    err = error_of(text)
    assert "forbidden XML construct" in err.reason and err.location.line == 2


def test_malformed_and_truncated_xml() -> None:
    err = error_of(FULL.replace("</Layouts>", "</Layout>"))
    assert "not well-formed" in err.reason and err.location.line == 13
    cut = FULL[: FULL.index("<BinCode>01010A01")]
    assert isinstance(error_of(cut), TruncatedError)
    data = gzip.compress(FULL.encode())
    source = Source.from_bytes(data[: len(data) // 2], name="cut.xml.gz")
    with pytest.raises(TruncatedError):
        list(FMT.read(source, ReadOptions()))


def test_size_element_and_die_limits() -> None:
    assert "limit" in str(error_of(FULL, max_text_bytes=100))
    # the element cap is max_dies + 10,000 (a coordinate map needs one element per die)
    many = "<MapData>" + "<Layouts/>" * 10_050 + "</MapData>"
    assert "10,001 XML elements" in error_of(many, max_dies=1).reason
    assert "max_dies" in error_of(document(["01" * 30]), max_dies=20).reason


def test_raster_cell_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from waferscope.protocols.formats.e142 import _bins as e142_bins

    monkeypatch.setattr(e142_bins, "MAX_CELLS", 10)
    assert "more than 10 cells" in error_of(document(["FF" * 11])).reason


# ------------------------------------------------------------------------ writer
def wafer_of(
    grid: np.ndarray,
    bins: np.ndarray,
    *,
    origin: tuple[int, int] = (0, 0),
    orientation: Orientation | None = None,
    info: WaferInfo | None = None,
) -> WaferMap:
    return WaferMap.from_dense(
        grid,
        hard_bins=bins,
        origin=origin,
        provenance=Provenance(source="mem", format="test"),
        orientation=orientation,
        info=info,
    )


GRID = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 2, 1]], np.uint8)
BINS = np.where(GRID == 2, 9, 1)


def write(maps: list[WaferMap]) -> bytes:
    out = io.BytesIO()
    FMT.write(maps, out)
    return out.getvalue()


@pytest.mark.parametrize("x_side", [Side.RIGHT, Side.LEFT])
@pytest.mark.parametrize("y_side", [Side.DOWN, Side.UP])
@pytest.mark.parametrize("mark", [None, Side.DOWN, Side.LEFT, Side.UP, Side.RIGHT])
def test_round_trip_keeps_dies_identity_and_orientation(
    x_side: Side, y_side: Side, mark: Side | None
) -> None:
    orientation = Orientation(
        mark=mark,
        mark_kind=None if mark is None else MarkKind.NOTCH,
        x_increases=x_side,
        y_increases=y_side,
    )
    info = WaferInfo(
        lot_id="L1", wafer_id="W3", part_type="P", die_width_um=812.5, die_height_um=640.0
    )
    original = wafer_of(GRID, BINS, origin=(4, 7), orientation=orientation, info=info)
    (back,) = read(write([original]))
    assert dies(back) == dies(original)
    assert back.orientation == orientation
    got = back.info
    assert (got.lot_id, got.wafer_id, got.part_type) == ("L1", "W3", "P")
    assert (got.die_width_um, got.die_height_um) == (812.5, 640.0)


def test_written_document_is_namespaced_e142() -> None:
    root = ET.fromstring(write([wafer_of(GRID, BINS)]))
    assert root.tag == f"{{{E142_NAMESPACE}}}MapData"
    assert all(el.tag.startswith(f"{{{E142_NAMESPACE}}}") for el in root.iter())
    ns = {"e": E142_NAMESPACE}
    definitions = root.findall(".//e:BinDefinition", ns)
    assert [(d.get("BinCode"), d.get("BinQuality"), d.get("BinCount")) for d in definitions] == [
        ("01", "Pass", "7"),
        ("09", "Fail", "2"),
    ]
    bin_code_map = root.find(".//e:BinCodeMap", ns)
    assert bin_code_map is not None and bin_code_map.get("BinType") == "HexaDecimal"
    assert FMT.sniff(write([wafer_of(GRID, BINS)]))


def test_negative_coordinates_are_shifted_to_the_origin() -> None:
    (back,) = read(write([wafer_of(GRID, BINS, origin=(-2, -1))]))
    shifted = {(x + 2, y + 1, b, p) for x, y, b, p in dies(wafer_of(GRID, BINS, origin=(-2, -1)))}
    assert dies(back) == shifted


def test_unknown_and_conflicting_bins_get_their_own_codes() -> None:
    bins = np.ones_like(GRID, dtype=np.int64)  # bin 1 both passes and fails
    bins[2, 2] = -1  # one failing die without a bin
    original = wafer_of(GRID, bins)
    (back,) = read(write([original]))
    assert {(x, y, p) for x, y, _, p in dies(back)} == {(x, y, p) for x, y, _, p in dies(original)}
    names = back.info.extra["bin_names"]
    for text in ("hard bin 1, pass", "hard bin 1, fail", "no hard bin, fail"):
        assert text in names


def test_large_bins_use_integer2_and_huge_ones_are_refused() -> None:
    (back,) = read(write([wafer_of(GRID, np.where(GRID == 2, 300, 1))]))
    assert back.info.extra["bin_type"] == "Integer2"
    assert set(back.dies.hard_bin.tolist()) == {1, 300}
    with pytest.raises(FormatError, match="Integer2"):
        write([wafer_of(GRID, np.where(GRID == 2, 70_000, 1))])


def test_several_wafers_round_trip_in_order() -> None:
    a = wafer_of(GRID, BINS, info=WaferInfo(lot_id="L", wafer_id="1"))
    b = wafer_of(GRID[::-1], BINS[::-1], info=WaferInfo(lot_id="L", wafer_id="2"))
    back = read(write([a, b, a]))
    assert [w.info.wafer_id for w in back] == ["1", "2", "1#3"]
    assert dies(back[1]) == dies(b) and dies(back[2]) == dies(a)


def test_round_trip_of_a_real_wm811k_map(data_dir: Path) -> None:
    from waferscope.protocols.datasets import load_labelled_arrays

    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    grid = arrays.maps[7]
    original = wafer_of(grid, np.where(grid == 2, 2, 1))
    (back,) = read(write([original]))
    assert np.array_equal(back.to_dense(), original.to_dense())
    assert back.fail_count == int(np.count_nonzero(grid == 2))


def test_registry_detects_written_files(tmp_path: Path) -> None:
    from waferscope.protocols import formats

    try:
        formats.list_formats()
    except ImportError as exc:  # another format's module is not written yet
        pytest.skip(f"registry incomplete: {exc}")
    path = tmp_path / "wafer.dat"
    path.write_bytes(gzip.compress(write([wafer_of(GRID, BINS)])))
    (back,) = formats.read_maps(path)
    assert back.provenance.format == "e142" and back.die_count == 9


# ------------------------------------------------------------------------ hostile bytes
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_VALID = FULL.encode()


@HOSTILE
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    FMT.sniff(data)
    for payload in (data, b"<MapData>" + data):
        with contextlib.suppress(FormatError):
            read(payload)


@HOSTILE
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=4),
    st.integers(0, len(_VALID)),
    st.binary(max_size=20),
)
def test_mutated_documents_raise_only_format_errors(
    flips: list[tuple[int, int]], cut: int, inserted: bytes
) -> None:
    data = bytearray(_VALID)
    for position, value in flips:
        data[position] = value
    for payload in (
        bytes(data),
        bytes(data[:cut]),
        bytes(data[:cut]) + inserted + bytes(data[cut:]),
    ):
        with contextlib.suppress(FormatError):
            for wafer in read(payload):
                assert wafer.die_count >= 0


@HOSTILE
@given(
    st.text(alphabet="0123456789ABCDEFabcdefXZ .\n", max_size=30),
    st.sampled_from(["HexaDecimal", "Integer2", "Decimal", "ASCII"]),
)
def test_random_rows_raise_only_format_errors(row: str, bin_type: str) -> None:
    with contextlib.suppress(FormatError):
        read(document([row, "01"], bin_type=bin_type, definitions=""))
