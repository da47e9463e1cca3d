"""STDF reader under hostile input: random bytes, random records, mutated and cut real files.

Whatever the bytes, reading must either yield WaferMaps or raise one FormatError (a subclass
such as TruncatedError included) that names the source; nothing else may escape.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.stdf.reader import StdfFormat
from waferscope.protocols.wafermap import WaferMap

FMT = StdfFormat()


def fast(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


DECODED = [
    (0, 10),
    (1, 10),
    (1, 20),
    (1, 40),
    (1, 50),
    (1, 80),
    (2, 10),
    (2, 20),
    (2, 30),
    (5, 10),
    (5, 20),
    (15, 10),
    (50, 10),
    (180, 1),
    (1, 99),
]


def read_or_format_error(data: bytes, policy: RetestPolicy = RetestPolicy.LAST) -> list[WaferMap]:
    """The maps, or [] after a FormatError; any other exception fails the test."""
    error: FormatError | None = None
    try:
        source = Source.from_bytes(data, "fuzz.stdf")  # may already meet a corrupt container
        maps = list(FMT.read(source, ReadOptions(retest=policy)))
    except FormatError as exc:
        error = exc
    if error is not None:
        assert error.location.source == "fuzz.stdf"
        assert str(error).startswith("fuzz.stdf")
        return []
    for m in maps:
        assert isinstance(m, WaferMap)
        assert len(m.dies) == m.die_count
    return maps


class RealFile(NamedTuple):
    """A real file and where its records and wafers lie (short repr for hypothesis)."""

    data: bytes
    starts: list[int]  # offset of every record
    first_wir_end: int
    last_wrr_end: int

    def __repr__(self) -> str:
        return f"<a595.stdf: {len(self.data):,} bytes>"


@pytest.fixture(scope="module")
def small_real(tester_dir: Path) -> RealFile:
    """The a595 file (3 wafers, big-endian)."""
    data = gzip.decompress((tester_dir / "stdf" / "a595.stdf.gz").read_bytes())
    starts, p = [], 0
    while p < len(data):
        starts.append(p)
        p += 4 + struct.unpack_from(">H", data, p)[0]

    def end(q: int) -> int:
        return q + 4 + struct.unpack_from(">H", data, q)[0]

    wirs = [q for q in starts if data[q + 2 : q + 4] == b"\x02\x0a"]
    wrrs = [q for q in starts if data[q + 2 : q + 4] == b"\x02\x14"]
    return RealFile(data, starts, end(wirs[0]), end(wrrs[-1]))


@fast(150)
@given(
    st.sampled_from([b"\x02\x00\x00\x0a\x02\x04", b"\x00\x02\x00\x0a\x01\x04"]),
    st.binary(max_size=600),
)
def test_random_bytes_after_a_far(far: bytes, tail: bytes) -> None:
    read_or_format_error(far + tail)


@fast(150)
@given(st.binary(max_size=64))
def test_random_bytes_alone(data: bytes) -> None:
    read_or_format_error(data)


@fast(200)
@given(
    st.sampled_from("<>"),
    st.lists(st.tuples(st.sampled_from(DECODED), st.binary(max_size=48)), max_size=25),
    st.sampled_from(list(RetestPolicy)),
)
def test_random_records_of_the_decoded_types(
    order: str, recs: list[tuple[tuple[int, int], bytes]], policy: RetestPolicy
) -> None:
    far = struct.pack(order + "HBBBB", 2, 0, 10, 2 if order == "<" else 1, 4)
    body = b"".join(struct.pack(order + "HBB", len(b), t, s) + b for (t, s), b in recs)
    read_or_format_error(far + body, policy)


@fast(60)
@given(st.data())
def test_mutated_real_file(small_real: RealFile, data: st.DataObject) -> None:
    raw, starts = small_real.data, small_real.starts
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.booleans()):  # hit a record header or the first fields after it
            pos = data.draw(st.sampled_from(starts)) + data.draw(st.integers(0, 16))
        else:
            pos = data.draw(st.integers(0, len(raw) - 1))
        if pos < len(mutated):
            mutated[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.none() | st.integers(0, len(raw)))
    read_or_format_error(bytes(mutated[:cut]))


@fast(40)
@given(st.data())
def test_cut_real_file_keeps_a_partial_wafer(small_real: RealFile, data: st.DataObject) -> None:
    raw = small_real.data
    cut = data.draw(st.integers(small_real.first_wir_end, len(raw) - 1))
    maps = read_or_format_error(raw[:cut])
    if cut < small_real.last_wrr_end:  # a wafer was in progress: it is reported, partial
        assert maps and maps[-1].partial


@fast(25)
@given(st.data())
def test_cut_gzip_stream(small_real: RealFile, data: st.DataObject) -> None:
    raw = small_real.data
    packed = gzip.compress(raw[:400_000], compresslevel=1)
    cut = data.draw(st.integers(0, len(packed)))
    read_or_format_error(packed[:cut])
