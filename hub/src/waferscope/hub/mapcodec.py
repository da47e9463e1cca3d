"""Compact blob encodings of wafer maps and heatmaps.

A wafer map is kept as the 2-bit packed states of the MQTT ``CompactWaferMap`` (four dies per
byte, see ``docs/messages.md``) behind a 16-byte header, deflated when that is smaller (maps are
mostly runs of "pass" and "no die", so they usually are)::

    offset  size  field
    0       2     magic b"WM"
    2       1     format version (1)
    3       1     flags: bit 0 = payload is zlib-deflated
    4       2     rows (uint16, little-endian)
    6       2     cols (uint16)
    8       4     origin_x (int32)
    12      4     origin_y (int32)
    16      ...   packed states (possibly deflated)

A heatmap uses the same idea with magic b"WH": rows, cols (uint16) and the row-major uint8
relevance bytes, deflated.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.messages import MessageError
from waferscope.protocols.pb.result_pb2 import CompactWaferMap, Heatmap

_MAP: Final = struct.Struct("<2sBBHHii")
_HEAT: Final = struct.Struct("<2sBBHH")
_VERSION: Final = 1
_DEFLATED: Final = 1
# byte -> 1 when one of its four 2-bit groups is 3 (the reserved state), else 0
_RESERVED_TABLE: Final = bytes(1 if b & (b >> 1) & 0x55 else 0 for b in range(256))
_LEVEL: Final = 1  # fast; maps and heatmaps are long runs, level 6 saves little more


class MapCodecError(WaferscopeError):
    """A stored map or heatmap blob is not in the expected layout."""


def _pack(data: bytes) -> tuple[int, bytes]:
    deflated = zlib.compress(data, _LEVEL)
    return (_DEFLATED, deflated) if len(deflated) < len(data) else (0, data)


def _unpack(flags: int, data: bytes, what: str) -> bytes:
    if not flags & _DEFLATED:
        return data
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise MapCodecError(f"{what} blob is corrupt: {exc}") from None


def check_map(compact: CompactWaferMap) -> None:
    """What ``messages.unpack_states`` would refuse, checked without unpacking (ingest path):
    a byte count that does not fit the shape, or a die in the reserved state 3."""
    expected = -(-compact.rows * compact.cols // 4)
    if len(compact.states) != expected:
        raise MessageError(
            f"compact map {compact.rows}x{compact.cols} needs {expected} state bytes,"
            f" got {len(compact.states)}",
            message_type="CompactWaferMap",
        )
    if bytes(compact.states).translate(_RESERVED_TABLE).strip(b"\0"):  # a 2-bit group 0b11
        raise MessageError("compact map holds the reserved state 3", message_type="CompactWaferMap")


def encode_map(compact: CompactWaferMap) -> bytes:
    if compact.rows > 0xFFFF or compact.cols > 0xFFFF:
        raise MapCodecError(f"map {compact.rows}x{compact.cols} is too large to store")
    flags, payload = _pack(bytes(compact.states))
    header = _MAP.pack(
        b"WM", _VERSION, flags, compact.rows, compact.cols, compact.origin_x, compact.origin_y
    )
    return header + payload


def decode_map(blob: bytes) -> CompactWaferMap:
    if len(blob) < _MAP.size:
        raise MapCodecError("map blob is shorter than its header")
    magic, version, flags, rows, cols, ox, oy = _MAP.unpack_from(blob)
    if magic != b"WM" or version != _VERSION:
        raise MapCodecError(f"not a version-{_VERSION} map blob")
    states = _unpack(flags, blob[_MAP.size :], "map")
    return CompactWaferMap(rows=rows, cols=cols, origin_x=ox, origin_y=oy, states=states)


def encode_heatmap(heatmap: Heatmap) -> bytes:
    data = bytes(heatmap.data)
    if len(data) != heatmap.rows * heatmap.cols:
        raise MapCodecError(
            f"heatmap {heatmap.rows}x{heatmap.cols} needs {heatmap.rows * heatmap.cols} bytes, "
            f"got {len(data)}"
        )
    flags, payload = _pack(data)
    return _HEAT.pack(b"WH", _VERSION, flags, heatmap.rows, heatmap.cols) + payload


def decode_heatmap(blob: bytes) -> tuple[int, int, bytes]:
    """(rows, cols, row-major uint8 relevance) of a heatmap blob."""
    if len(blob) < _HEAT.size:
        raise MapCodecError("heatmap blob is shorter than its header")
    magic, version, flags, rows, cols = _HEAT.unpack_from(blob)
    if magic != b"WH" or version != _VERSION:
        raise MapCodecError(f"not a version-{_VERSION} heatmap blob")
    data = _unpack(flags, blob[_HEAT.size :], "heatmap")
    if len(data) != rows * cols:
        raise MapCodecError("heatmap blob has the wrong number of bytes")
    return rows, cols, data
