"""STDF V4 writer: WaferMaps (and optional parametric results) as a Standard Test Data Format file.

Follows the public *STDF Specification V4* (Teradyne) record layouts, in either byte order
(``"<"`` writes ``CPU_TYPE`` 2, little-endian; ``">"`` writes ``CPU_TYPE`` 1, big-endian). The
file is laid out the way wafer-sort testers write it:

``FAR, MIR, [SDR], WCR, then per wafer WIR, per die (PIR, [PTR ...], PRR), WRR; then HBR and
SBR summaries (HEAD_NUM 255), PCR, MRR``.

Mapping from a :class:`WaferMap`:

* ``PRR``: ``X_COORD`` / ``Y_COORD`` from ``dies.x`` / ``dies.y`` (they must fit an I*2),
  ``PART_FLG`` bit 3 = failed, bit 1 = "supersedes an earlier part at the same X/Y" for the
  second and later results of a coordinate (a retest), ``HARD_BIN`` / ``SOFT_BIN`` (an unknown
  bin, -1, is written as 65535), ``SITE_NUM`` (-1 is written as 0), ``PART_ID`` the part's
  sequence number in the wafer.
* ``WIR`` / ``WRR``: ``HEAD_NUM`` is the dies' head when they all share one (else 1); every PRR
  of the wafer carries it, so that readers route the parts to the right wafer.
* MIR / SDR / WRR strings come from :class:`WaferInfo` and the ``info.extra`` keys the reader
  produces (``probe_card_id``, ``sublot_id``, ``fab_wafer_id``, bin names, ...), so a file read
  by :mod:`.reader` is written back with the same metadata. Times are written as the datetimes'
  own wall-clock seconds since 1970 (STDF stores tester local time).
* ``WCR``: sizes in millimetres (``WF_UNITS`` 3), ``WF_FLAT`` / ``POS_X`` / ``POS_Y`` from the
  orientation, ``CENTER_X`` / ``CENTER_Y`` (-32768 when unknown).
* Optional ``PTR`` records (``tests``): per die one result per :class:`ParametricTest`, drawn
  deterministically from ``seed``; a failing die fails one test. The first PTR of each test
  carries the limits and units, later ones only the result and the test text (the spec lets
  them inherit the rest), as real test programs do.

:func:`iter_stdf_records` is the low-level generator (complete records as ``bytes`` in file
order) for benchmarks and tester simulation; :func:`write_stdf` writes them to a stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import WaferMapError
from waferscope.protocols.formats.stdf._records import (
    FAR,
    HBR,
    MIR,
    MIR_STRINGS,
    MRR,
    PCR,
    PIR,
    PRR,
    PTR,
    SBR,
    SDR,
    SDR_STRINGS,
    WCR,
    WIR,
    WRR,
)
from waferscope.protocols.formats.stdf._wafers import MIR_EXTRA, SDR_EXTRA
from waferscope.protocols.wafermap import Side, WaferInfo, WaferMap

_CPU_TYPE: Final = {"<": 2, ">": 1}
_EPOCH: Final = datetime(1970, 1, 1)
_SIDE_CODE: Final = {Side.UP: b"U", Side.DOWN: b"D", Side.LEFT: b"L", Side.RIGHT: b"R"}
_NO_COUNT: Final = 0xFFFFFFFF
_WRITE_BATCH: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ParametricTest:
    """One parametric test of a simulated test program (written as PTR records)."""

    number: int
    name: str
    units: str = "V"
    low: float = 0.0
    high: float = 1.0


def stdf_seconds(when: datetime | None) -> int:
    """A datetime as STDF U*4 seconds (its own wall clock; 0 when unknown)."""
    if when is None:
        return 0
    seconds = int((when.replace(tzinfo=None) - _EPOCH).total_seconds())
    return seconds if 0 < seconds <= 0xFFFFFFFF else 0


def cn(text: str | None) -> bytes:
    """A C*n field: length byte plus at most 255 Latin-1 characters."""
    data = (text or "").encode("latin-1", errors="replace")[:255]
    return bytes((len(data),)) + data


class StdfEncoder:
    """Packs single STDF V4 records in one byte order."""

    def __init__(self, byte_order: str = "<") -> None:
        if byte_order not in _CPU_TYPE:
            raise ValueError(f"byte_order must be '<' or '>', got {byte_order!r}")
        self.order = byte_order
        o = byte_order
        self._header = struct.Struct(o + "HBB")
        self._pir = struct.Struct(o + "HBBBB")
        self._prr = struct.Struct(o + "BBBHHHhhI")
        self._ptr = struct.Struct(o + "IBBBBf")
        self._ptr_limits = struct.Struct(o + "Bbbbff")  # OPT_FLAG, 3 scales, LO_LIMIT, HI_LIMIT

    def record(self, code: int, body: bytes) -> bytes:
        if len(body) > 0xFFFF:
            raise WaferMapError(f"an STDF record holds at most 65,535 bytes, got {len(body):,}")
        return self._header.pack(len(body), code >> 8, code & 0xFF) + body

    def far(self) -> bytes:
        return self.record(FAR, bytes((_CPU_TYPE[self.order], 4)))

    def mir(
        self,
        setup_t: int,
        start_t: int,
        station: int,
        codes: tuple[str, str],
        strings: Sequence[str],
    ) -> bytes:
        """MIR; ``codes`` are MODE_COD and RTST_COD, ``strings`` LOT_ID .. SUPR_NAM in order."""
        fixed = struct.pack(
            self.order + "IIBccc",
            setup_t,
            start_t,
            station & 0xFF,
            _c1(codes[0]),
            _c1(codes[1]),
            b" ",
        )
        fixed += struct.pack(self.order + "Hc", 65535, b" ")
        return self.record(MIR, fixed + _strings(strings))

    def sdr(self, head: int, site_grp: int, sites: Sequence[int], strings: Sequence[str]) -> bytes:
        body = bytes((head, site_grp, len(sites), *sites)) + _strings(strings)
        return self.record(SDR, body)

    def wcr(
        self,
        size_mm: float,
        die_h_mm: float,
        die_w_mm: float,
        flat: bytes,
        center_x: int,
        center_y: int,
        pos_x: bytes,
        pos_y: bytes,
    ) -> bytes:
        body = struct.pack(
            self.order + "fffBchhcc",
            size_mm,
            die_h_mm,
            die_w_mm,
            3,
            flat,
            center_x,
            center_y,
            pos_x,
            pos_y,
        )
        return self.record(WCR, body)

    def wir(self, head: int, start_t: int, wafer_id: str | None) -> bytes:
        return self.record(WIR, struct.pack(self.order + "BBI", head, 255, start_t) + cn(wafer_id))

    def wrr(self, head: int, finish_t: int, counts: Sequence[int], strings: Sequence[str]) -> bytes:
        body = struct.pack(self.order + "BBI5I", head, 255, finish_t, *counts)
        return self.record(WRR, body + _strings(strings, keep=1))

    def pir(self, head: int, site: int) -> bytes:
        return self._pir.pack(2, PIR >> 8, PIR & 0xFF, head, site)

    def prr(
        self,
        head: int,
        site: int,
        flag: int,
        num_test: int,
        hard_bin: int,
        soft_bin: int,
        x: int,
        y: int,
        part_id: str,
    ) -> bytes:
        body = self._prr.pack(head, site, flag, num_test, hard_bin, soft_bin, x, y, 0)
        return self.record(PRR, body + cn(part_id))

    def ptr(
        self, test: ParametricTest, head: int, site: int, result: float, failed: bool, first: bool
    ) -> bytes:
        body = self._ptr.pack(test.number, head, site, 0x80 if failed else 0, 0, result)
        body += cn(test.name)
        if first:  # ALARM_ID, OPT_FLAG, scales, limits, UNITS, C_RESFMT, C_LLMFMT, C_HLMFMT
            # OPT_FLAG 0x0E: bit 1 (reserved, set), bits 2 and 3 (no LO_SPEC / HI_SPEC, which
            # are therefore left out at the end of the record).
            body += b"\x00" + self._ptr_limits.pack(0x0E, 0, 0, 0, test.low, test.high)
            body += cn(test.units) + b"\x00\x00\x00"
        return self.record(PTR, body)

    def bin_record(self, code: int, number: int, count: int, pass_fail: bytes, name: str) -> bytes:
        body = struct.pack(self.order + "BBHIc", 255, 0, number, count, pass_fail) + cn(name)
        return self.record(code, body)

    def pcr(self, counts: Sequence[int]) -> bytes:
        return self.record(PCR, struct.pack(self.order + "BB5I", 255, 0, *counts))

    def mrr(self, finish_t: int) -> bytes:
        return self.record(MRR, struct.pack(self.order + "Ic", finish_t, b" "))


def _r4(value: float | None, divisor: float = 1.0) -> float:
    """A size for an R*4 field (0 = missing when unknown or not representable)."""
    if value is None or not 0 < value / divisor < 3.0e38:
        return 0.0
    return value / divisor


def _i2(value: int | None) -> int:
    """A coordinate for an I*2 field (-32768 = missing when unknown or out of range)."""
    return value if value is not None and -32767 <= value <= 32767 else -32768


def _c1(text: str) -> bytes:
    return (text or " ")[:1].encode("latin-1", errors="replace")


def _strings(values: Sequence[str], keep: int = 0) -> bytes:
    """C*n fields, dropping trailing empty ones (the spec lets a record end early)."""
    last = max([keep] + [i + 1 for i, v in enumerate(values) if v])
    return b"".join(cn(v) for v in values[:last])


def _wafer_head(wafer: WaferMap) -> int:
    heads = np.unique(wafer.dies.head)
    return int(heads[0]) if heads.shape[0] == 1 and 0 <= int(heads[0]) <= 255 else 1


def _check_coordinates(wafer: WaferMap) -> None:
    d = wafer.dies
    if len(d) and (
        min(int(d.x.min()), int(d.y.min())) < -32767 or max(int(d.x.max()), int(d.y.max())) > 32767
    ):
        raise WaferMapError("STDF stores die coordinates as I*2: they must lie in -32767..32767")


def _u2(values: npt.NDArray[np.int32]) -> list[int]:
    """A bin column as U*2 values (unknown -1 becomes 65535)."""
    out: list[int] = np.where((values < 0) | (values > 65535), 65535, values).tolist()
    return out


def _lot_records(enc: StdfEncoder, maps: Sequence[WaferMap]) -> Iterator[bytes]:
    """FAR, MIR, SDR (one per head, when there is anything to say) and WCR."""
    yield enc.far()
    first = maps[0] if maps else None
    info = first.info if first else WaferInfo()
    extra = info.extra
    mir_values = {
        "LOT_ID": info.lot_id or "",
        "PART_TYP": info.part_type or "",
        "NODE_NAM": info.tester_id or "",
        "JOB_NAM": info.program or "",
        **{name: extra.get(key, "") for name, key in MIR_EXTRA.items()},
    }
    start = stdf_seconds(info.start_time)
    setup = extra.get("setup_time", "")
    try:
        setup_t = stdf_seconds(datetime.fromisoformat(setup)) if setup else start
    except ValueError:
        setup_t = start
    station = extra.get("station", "1")
    yield enc.mir(
        setup_t,
        start,
        int(station) if station.isdigit() else 1,
        (extra.get("test_mode", " "), extra.get("lot_retest_code", " ")),
        [mir_values.get(name, "") for name in MIR_STRINGS],
    )
    sdr_strings = [extra.get(SDR_EXTRA[name], "") for name in SDR_STRINGS]
    for head in sorted({_wafer_head(m) for m in maps}):
        sites = sorted(
            {int(s) for m in maps if _wafer_head(m) == head for s in np.unique(m.dies.site)} - {-1}
        )
        yield enc.sdr(head, 1, [s for s in sites if s <= 255], sdr_strings)
    if first is not None:
        o = first.orientation
        yield enc.wcr(
            _r4(info.wafer_size_mm),
            _r4(info.die_height_um, 1000.0),
            _r4(info.die_width_um, 1000.0),
            _SIDE_CODE[o.mark] if o.mark else b" ",
            _i2(info.center_x),
            _i2(info.center_y),
            _SIDE_CODE[o.x_increases],
            _SIDE_CODE[o.y_increases],
        )


@dataclass(slots=True)
class _Totals:
    parts: int = 0
    retests: int = 0
    good: int = 0
    finish_t: int = 0
    hard: dict[int, list[int]] = field(default_factory=dict)  # bin -> [passed, failed]
    soft: dict[int, list[int]] = field(default_factory=dict)
    tests_written: set[int] = field(default_factory=set)  # test numbers whose first PTR is out


def _wafer_records(
    enc: StdfEncoder,
    wafer: WaferMap,
    tests: Sequence[ParametricTest],
    rng: np.random.Generator,
    totals: _Totals,
) -> Iterator[bytes]:
    """WIR, per die PIR [PTR ...] PRR (one bytes object per die), WRR."""
    _check_coordinates(wafer)
    head = _wafer_head(wafer)
    yield enc.wir(head, stdf_seconds(wafer.info.start_time), wafer.info.wafer_id)
    d = wafer.dies
    n = len(d)
    xs, ys, passed = d.x.tolist(), d.y.tolist(), d.passed.tolist()
    hard, soft = _u2(d.hard_bin), _u2(d.soft_bin)
    sites = np.where((d.site < 0) | (d.site > 255), 0, d.site).astype(int).tolist()
    values, failing = _results(rng, tests, d.passed, d.hard_bin) if tests else (None, None)
    seen: set[tuple[int, int]] = set()
    retests = 0
    for i in range(n):
        xy = (xs[i], ys[i])
        retest = xy in seen
        seen.add(xy)
        retests += retest
        flag = (0 if passed[i] else 0x08) | (0x02 if retest else 0)
        site = sites[i]
        parts = [enc.pir(head, site)]
        if values is not None and failing is not None:
            row, failed_test = values[i].tolist(), int(failing[i])
            for k, test in enumerate(tests):
                first = test.number not in totals.tests_written
                parts.append(enc.ptr(test, head, site, row[k], k == failed_test, first))
                totals.tests_written.add(test.number)
        parts.append(
            enc.prr(
                head, site, flag, min(len(tests), 65535), hard[i], soft[i], xs[i], ys[i], str(i + 1)
            )
        )
        yield b"".join(parts)
        totals.hard.setdefault(hard[i], [0, 0])[0 if passed[i] else 1] += 1
        totals.soft.setdefault(soft[i], [0, 0])[0 if passed[i] else 1] += 1
    good = int(np.count_nonzero(d.passed))
    totals.parts += n
    totals.retests += retests
    totals.good += good
    finish_t = stdf_seconds(wafer.info.end_time)
    totals.finish_t = max(totals.finish_t, finish_t)
    x = wafer.info.extra
    ids = ("fab_wafer_id", "frame_id", "mask_id", "wafer_description", "wafer_exec_description")
    yield enc.wrr(
        head,
        finish_t,
        [n, retests, _NO_COUNT, good, _NO_COUNT],
        [wafer.info.wafer_id or "", *(x.get(key, "") for key in ids)],
    )


def iter_stdf_records(
    maps: Sequence[WaferMap],
    *,
    byte_order: str = "<",
    tests: Sequence[ParametricTest] = (),
    seed: int = 0,
) -> Iterator[bytes]:
    """Yield the file as complete records (one ``bytes`` per record, or per die), in order."""
    enc = StdfEncoder(byte_order)
    rng = np.random.default_rng(seed)
    yield from _lot_records(enc, maps)
    totals = _Totals(finish_t=stdf_seconds(maps[0].info.start_time) if maps else 0)
    for wafer in maps:
        yield from _wafer_records(enc, wafer, tests, rng, totals)
    extra = maps[0].info.extra if maps else {}
    for code, prefix, counts in ((HBR, "hard_bin", totals.hard), (SBR, "soft_bin", totals.soft)):
        for number in sorted(counts):
            n_pass, n_fail = counts[number]
            pf = b"P" if not n_fail else (b"F" if not n_pass else b" ")
            name = extra.get(f"{prefix}.{number}.name", "")
            yield enc.bin_record(code, number, n_pass + n_fail, pf, name)
    yield enc.pcr([totals.parts, totals.retests, _NO_COUNT, totals.good, _NO_COUNT])
    yield enc.mrr(totals.finish_t)


def _results(
    rng: np.random.Generator,
    tests: Sequence[ParametricTest],
    passed: npt.NDArray[np.bool_],
    hard_bin: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Per die one value per test inside its limits; a failing die fails one test (by bin)."""
    low = np.array([t.low for t in tests], dtype=np.float64)
    high = np.array([t.high for t in tests], dtype=np.float64)
    span = high - low
    values = low + span * rng.uniform(0.1, 0.9, size=(passed.shape[0], len(tests)))
    failed_test = np.where(passed, -1, np.abs(hard_bin) % len(tests))
    rows = np.flatnonzero(~passed)
    cols = failed_test[rows]
    values[rows, cols] = high[cols] + span[cols] * rng.uniform(0.05, 0.5, size=rows.shape[0])
    return values.astype(np.float32), failed_test


def write_stdf(
    maps: Sequence[WaferMap],
    stream: BinaryIO,
    *,
    byte_order: str = "<",
    tests: Sequence[ParametricTest] = (),
    seed: int = 0,
) -> int:
    """Write the maps as one STDF V4 file; returns the number of bytes written."""
    written = 0
    batch: list[bytes] = []
    size = 0
    for record in iter_stdf_records(maps, byte_order=byte_order, tests=tests, seed=seed):
        batch.append(record)
        size += len(record)
        if size >= _WRITE_BATCH:
            stream.write(b"".join(batch))
            written += size
            batch, size = [], 0
    stream.write(b"".join(batch))
    return written + size
