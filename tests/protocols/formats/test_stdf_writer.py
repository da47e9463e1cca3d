"""STDF V4 writer: round trips through the reader, either byte order, checked by pystdf too."""

from __future__ import annotations

import gzip
import io
import struct
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import WaferMapError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.stdf.reader import StdfFormat
from waferscope.protocols.formats.stdf.writer import (
    ParametricTest,
    iter_stdf_records,
    write_stdf,
)
from waferscope.protocols.wafermap import (
    DieTable,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FMT = StdfFormat()
TESTS = [ParametricTest(100 + k, f"T{k}", "mA", 1.0 * k, 10.0 + k) for k in range(3)]


def read_all(data: bytes) -> list[WaferMap]:
    opts = ReadOptions(retest=RetestPolicy.ALL)
    return list(FMT.read(Source.from_bytes(data, "w.stdf"), opts))


def written(maps: list[WaferMap], **kw: object) -> bytes:
    buf = io.BytesIO()
    size = write_stdf(maps, buf, **kw)  # type: ignore[arg-type]
    assert size == len(buf.getvalue())
    return buf.getvalue()


def assert_same_maps(got: list[WaferMap], expected: list[WaferMap]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.dies == e.dies
        assert g.info.wafer_id == e.info.wafer_id
        assert g.info.lot_id == e.info.lot_id
        assert g.orientation == e.orientation
        assert not g.partial


@pytest.fixture(scope="module")
def a595_maps(tester_dir: Path) -> list[WaferMap]:
    with Source.open(tester_dir / "stdf" / "a595.stdf.gz") as source:
        return list(FMT.read(source, ReadOptions()))


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("tests", [(), TESTS])
def test_real_wafers_round_trip(a595_maps: list[WaferMap], order: str, tests: list) -> None:  # type: ignore[type-arg]
    data = written(a595_maps, byte_order=order, tests=tests)
    assert data[:6] == (
        b"\x02\x00\x00\x0a\x02\x04" if order == "<" else b"\x00\x02\x00\x0a\x01\x04"
    )
    back = read_all(data)
    assert_same_maps(back, a595_maps)
    for g, e in zip(back, a595_maps, strict=True):
        assert g.info.start_time == e.info.start_time and g.info.end_time == e.info.end_time
        assert g.info.wafer_size_mm == e.info.wafer_size_mm == 150.0
        assert g.info.die_width_um == e.info.die_width_um
        assert g.info.tester_id == e.info.tester_id and g.info.program == e.info.program
        for key in ("operator", "prober_type", "soft_bin.10.name", "setup_time", "station"):
            assert g.info.extra[key] == e.info.extra[key]


def test_format_object_is_a_writer(a595_maps: list[WaferMap]) -> None:
    from waferscope.protocols.formats.base import WaferWriter

    assert isinstance(FMT, WaferWriter)
    buf = io.BytesIO()
    FMT.write(a595_maps, buf)
    assert_same_maps(read_all(buf.getvalue()), a595_maps)


def test_gzip_of_written_file_reads_back(a595_maps: list[WaferMap]) -> None:
    assert_same_maps(read_all(gzip.compress(written(a595_maps, byte_order=">"))), a595_maps)


def test_retests_are_written_with_the_supersede_flag() -> None:
    dies = DieTable.build(
        x=[0, 1, 0],
        y=[0, 0, 0],
        passed=[False, True, True],
        hard_bin=[5, 1, 1],
        soft_bin=[5, 1, 1],
        site=[0, 1, 0],
        head=[2, 2, 2],
    )
    m = WaferMap(dies=dies, provenance=Provenance("m", "test"), info=WaferInfo(wafer_id="W"))
    data = written([m])
    (back,) = read_all(data)
    assert back.dies == dies
    assert any("1 PRRs are flagged as retests" in n for n in back.notes)
    (last,) = list(FMT.read(Source.from_bytes(data), ReadOptions()))
    assert last.die_count == 2 and last.pass_count == 2


def test_out_of_range_coordinates_are_refused() -> None:
    dies = DieTable.build(x=[40_000], y=[0], passed=[True])
    m = WaferMap(dies=dies, provenance=Provenance("m", "test"))
    with pytest.raises(WaferMapError, match="I\\*2"):
        written([m])


def test_records_are_complete_and_in_file_order(a595_maps: list[WaferMap]) -> None:
    chunks = list(iter_stdf_records(a595_maps[:1], byte_order="<", tests=TESTS))
    kinds = []
    for chunk in chunks:
        p = 0
        while p < len(chunk):
            length, typ, sub = struct.unpack_from("<HBB", chunk, p)
            kinds.append((typ, sub))
            p += 4 + length
        assert p == len(chunk)
    names = {
        (0, 10): "FAR",
        (1, 10): "MIR",
        (1, 80): "SDR",
        (2, 30): "WCR",
        (2, 10): "WIR",
        (5, 10): "PIR",
        (15, 10): "PTR",
        (5, 20): "PRR",
        (2, 20): "WRR",
        (1, 40): "HBR",
        (1, 50): "SBR",
        (1, 30): "PCR",
        (1, 20): "MRR",
    }
    seq = [names[k] for k in kinds]
    assert seq[:5] == ["FAR", "MIR", "SDR", "WCR", "WIR"]
    assert seq[5:10] == ["PIR", "PTR", "PTR", "PTR", "PRR"]
    assert seq.count("PRR") == 112 and seq.count("PTR") == 3 * 112
    assert seq[-2:] == ["PCR", "MRR"] and seq[-3] == "SBR"


class Sink:
    """A pystdf sink keeping every record as a field dict, by record class name."""

    def __init__(self) -> None:
        self.seen: dict[str, list[dict[str, object]]] = {}

    def after_send(self, _src: object, rec: tuple[object, list[object]]) -> None:
        r = rec[0]
        fields = dict(zip(r.fieldNames, rec[1], strict=False))  # type: ignore[attr-defined]
        self.seen.setdefault(type(r).__name__, []).append(fields)


def test_pystdf_reads_what_the_writer_wrote(a595_maps: list[WaferMap]) -> None:
    pytest.importorskip("pystdf")
    from pystdf.IO import Parser

    for order in "<>":
        data = written(a595_maps, byte_order=order, tests=TESTS)
        sink = Sink()
        parser = Parser(inp=io.BytesIO(data))
        parser.addSink(sink)
        parser.parse()
        seen = sink.seen
        prr = seen["Prr"]
        expected = [
            d
            for m in a595_maps
            for d in zip(
                m.dies.x.tolist(), m.dies.y.tolist(), m.dies.hard_bin.tolist(), strict=True
            )
        ]
        assert [(p["X_COORD"], p["Y_COORD"], p["HARD_BIN"]) for p in prr] == expected
        assert [w["WAFER_ID"] for w in seen["Wir"]] == ["02", "03", "09"]
        first_ptr = seen["Ptr"][0]
        assert first_ptr["TEST_NUM"] == 100 and first_ptr["UNITS"] == "mA"
        assert first_ptr["HI_LIMIT"] == pytest.approx(10.0)
        assert seen["Wcr"][0]["WF_FLAT"] == "D" and seen["Wcr"][0]["POS_Y"] == "D"
        assert seen["Mir"][0]["LOT_ID"] == "TEST"


@st.composite
def wafer_maps(draw: st.DrawFn) -> WaferMap:
    n = draw(st.integers(0, 40))
    coord = st.integers(-32767, 32767)
    xs = draw(st.lists(coord, min_size=n, max_size=n))
    ys = draw(st.lists(coord, min_size=n, max_size=n))
    if n and draw(st.booleans()):  # some retests at coordinates already used
        k = draw(st.integers(1, n))
        xs, ys = xs + xs[:k], ys + ys[:k]
    n = len(xs)
    bins = st.integers(-1, 65534)
    head = draw(st.integers(0, 255))
    dies = DieTable.build(
        x=xs,
        y=ys,
        passed=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        hard_bin=draw(st.lists(bins, min_size=n, max_size=n)),
        soft_bin=draw(st.lists(bins, min_size=n, max_size=n)),
        site=draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)),
        head=np.full(n, head),
    )
    sides = st.sampled_from([Side.UP, Side.DOWN, Side.LEFT, Side.RIGHT])
    orientation = Orientation(
        mark=draw(st.none() | sides),
        x_increases=draw(st.sampled_from([Side.LEFT, Side.RIGHT])),
        y_increases=draw(st.sampled_from([Side.UP, Side.DOWN])),
    )
    text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20)
    info = WaferInfo(
        lot_id=draw(st.none() | text.filter(bool)),
        wafer_id=draw(st.none() | text.filter(bool)),
        start_time=draw(
            st.none()
            | st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1)).map(
                lambda d: d.replace(microsecond=0)
            )
        ),
    )
    return WaferMap(
        dies=dies, provenance=Provenance("h", "test"), info=info, orientation=orientation
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wafer_maps(), min_size=1, max_size=3), st.sampled_from("<>"), st.booleans())
def test_random_maps_round_trip(maps: list[WaferMap], order: str, with_tests: bool) -> None:
    # All wafers of a lot share the first wafer's orientation (STDF has one WCR per file).
    o = maps[0].orientation
    maps = [m.with_(orientation=o) for m in maps]
    back = read_all(written(maps, byte_order=order, tests=TESTS if with_tests else ()))
    assert_same_maps(
        back,
        [
            m.with_(info=m.info.__class__(lot_id=maps[0].info.lot_id, wafer_id=m.info.wafer_id))
            for m in maps
        ],
    )
    for g, e in zip(back, maps, strict=True):
        assert g.info.start_time == e.info.start_time
