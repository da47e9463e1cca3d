"""A real big-endian STDF file converted field by field to little-endian reads the same.

The converter below rewrites every record of ``lot2.stdf`` (a Teradyne A530 file written with
``CPU_TYPE`` 1, big-endian) in little-endian order from the STDF V4 field layouts of the record
types that file holds, and sets ``CPU_TYPE`` to 2. pystdf, when installed, confirms that the
conversion is faithful (every field of every record equal); the waferscope reader must then
give the same wafer from both files.
"""

from __future__ import annotations

import gzip
import io
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
from waferscope.protocols.formats.stdf.reader import StdfFormat

# Field layouts (STDF V4): an int is a byte width to reverse, "cn" a counted string / bit field,
# "k" an array of U*1 whose count is the previous field, "v" the GDR's typed V*n fields.
C = "cn"
LAYOUTS: dict[tuple[int, int], list[Any]] = {
    (1, 10): [4, 4, 1, 1, 1, 1, 2, 1] + [C] * 30,  # MIR
    (1, 20): [4, 1, C, C],  # MRR
    (1, 30): [1, 1, 4, 4, 4, 4, 4],  # PCR
    (1, 40): [1, 1, 2, 4, 1, C],  # HBR
    (1, 50): [1, 1, 2, 4, 1, C],  # SBR
    (1, 80): [1, 1, 1, "k"] + [C] * 16,  # SDR
    (2, 10): [1, 1, 4, C],  # WIR
    (2, 20): [1, 1, 4, 4, 4, 4, 4, 4] + [C] * 6,  # WRR
    (2, 30): [4, 4, 4, 1, 1, 2, 2, 1, 1],  # WCR
    (5, 10): [1, 1],  # PIR
    (5, 20): [1, 1, 1, 2, 2, 2, 2, 2, 4, C, C, C],  # PRR
    (10, 30): [1, 1, 1, 4, 4, 4, 4, C, C, C, 1, 4, 4, 4, 4, 4],  # TSR
    (15, 10): [4, 1, 1, 1, 1, 4, C, C, 1, 1, 1, 1, 4, 4, C, C, C, C, 4, 4],  # PTR
    (20, 10): [C],  # BPS
    (20, 20): [],  # EPS
    (50, 10): [2, "v"],  # GDR
}
V_WIDTH = {0: 0, 1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8}  # V*n type code -> width


def swap_body(body: bytes, layout: list[Any]) -> bytes:
    out = bytearray()
    p = 0
    count = 0
    for field in layout:
        if p >= len(body):
            break  # the remaining fields were omitted
        if field == C:
            n = body[p]
            out += body[p : p + 1 + n]
            p += 1 + n
        elif field == "k":
            out += body[p : p + count]
            p += count
        elif field == "v":
            for _ in range(count):
                code = body[p]
                out.append(code)
                p += 1
                if code in (10, 11):  # C*n, B*n
                    out += body[p : p + 1 + body[p]]
                    p += 1 + body[p]
                elif code == 12:  # D*n: U*2 bit count, then the bytes
                    bits = struct.unpack_from(">H", body, p)[0]
                    out += struct.pack("<H", bits) + body[p + 2 : p + 2 + (bits + 7) // 8]
                    p += 2 + (bits + 7) // 8
                elif code == 13:  # N*1
                    out.append(body[p])
                    p += 1
                else:
                    width = V_WIDTH[code]
                    out += body[p : p + width][::-1]
                    p += width
        else:
            chunk = body[p : p + field]
            assert len(chunk) == field, "a field runs past its record"
            count = chunk[0] if field == 1 else int.from_bytes(chunk, "big")
            out += chunk[::-1]
            p += field
    assert p == len(body), "bytes left after the last field"
    return bytes(out)


def big_to_little(data: bytes) -> bytes:
    assert data[:6] == b"\x00\x02\x00\x0a\x01\x04"
    out = [b"\x02\x00\x00\x0a\x02\x04"]
    p = 6
    while p < len(data):
        length, typ, sub = struct.unpack_from(">HBB", data, p)
        body = swap_body(data[p + 4 : p + 4 + length], LAYOUTS[(typ, sub)])
        out.append(struct.pack("<HBB", len(body), typ, sub) + body)
        p += 4 + length
    return b"".join(out)


@pytest.fixture(scope="module")
def both(tester_dir: Path) -> tuple[bytes, bytes]:
    big = gzip.decompress((tester_dir / "stdf" / "lot2.stdf.gz").read_bytes())
    return big, big_to_little(big)


def test_conversion_is_faithful_according_to_pystdf(both: tuple[bytes, bytes]) -> None:
    pytest.importorskip("pystdf")
    from pystdf.IO import Parser

    def parse(data: bytes) -> list[tuple[str, list[Any]]]:
        out: list[tuple[str, list[Any]]] = []

        class Sink:
            def after_send(self, _src: object, rec: tuple[Any, list[Any]]) -> None:
                out.append((type(rec[0]).__name__, list(rec[1])))

        parser = Parser(inp=io.BytesIO(data))
        parser.addSink(Sink())
        parser.parse()
        return out

    big, little = both
    a, b = parse(big), parse(little)
    assert len(a) == len(b) > 57_000
    assert a[0] == ("Far", [1, 4]) and b[0] == ("Far", [2, 4])
    assert a[1:] == b[1:]


@pytest.mark.parametrize("policy", [RetestPolicy.LAST, RetestPolicy.ALL])
def test_both_byte_orders_give_the_same_wafer(
    both: tuple[bytes, bytes], policy: RetestPolicy
) -> None:
    fmt = StdfFormat()
    big, little = both
    (a,) = fmt.read(Source.from_bytes(big, "x"), ReadOptions(retest=policy))
    (b,) = fmt.read(Source.from_bytes(little, "x"), ReadOptions(retest=policy))
    assert a.dies == b.dies
    assert a.orientation == b.orientation
    assert a.notes == b.notes
    assert a.info.extra["byte_order"] == "big-endian"
    assert b.info.extra["byte_order"] == "little-endian"
    strip = {k: v for k, v in a.info.extra.items() if k != "byte_order"}
    assert strip == {k: v for k, v in b.info.extra.items() if k != "byte_order"}
    assert replace(a.info, extra={}) == replace(b.info, extra={})
