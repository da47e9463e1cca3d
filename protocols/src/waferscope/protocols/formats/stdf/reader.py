"""STDF V4 reader (and writer entry point): wafer maps from Standard Test Data Format files.

Follows the public *STDF Specification V4* (Teradyne). Layouts of the records used are in
:mod:`._records`, how they become WaferMaps in :mod:`._wafers`, the writer in
:mod:`.writer`.

Detection: the first record must be a FAR (``REC_LEN`` = 2, ``REC_TYP`` = 0, ``REC_SUB`` = 10)
in either byte order. ``CPU_TYPE`` 1 means big-endian, 2 little-endian; 0 (VAX) and undefined
values are refused with a clear error, as is any ``STDF_VER`` other than 4.

How the file is read (speed and memory):

* The decompressed stream is read in 4 MiB chunks; memory stays bounded by the chunk plus the
  die columns. A pure-Python loop walks the record headers (one ``struct`` call and one table
  lookup per record, ~0.15 µs); every record that a wafer map does not need (PTR, FTR, MPR, GDR,
  DTR, PIR, ...) is skipped by its length without being decoded.
* PRR positions are only remembered; each batch is decoded with numpy gathers (13 fixed bytes per
  record: ``HEAD_NUM`` .. ``Y_COORD``) into per-wafer column buffers.
* The few other records (MIR, SDR, WCR, WIR, WRR, HBR, SBR) are decoded field by field.

Wafers: a WIR opens a wafer for its ``HEAD_NUM`` and the WRR of that head closes it; every PRR
goes to the open wafer of its own ``HEAD_NUM`` (several heads may test wafers at the same time).
A PRR whose head has no open wafer joins the only wafer a WIR has opened when there is exactly
one (writers that put 255 or another number in WIR/WRR than in the PRRs); otherwise the parts of
that head form a wafer of their own, closed by the head's next WIR or WRR. A file without any
WIR (some testers never write one) therefore gives one wafer per head, without a wafer id unless
a WRR names it; a note says so. Wafers are yielded in the order they started, after the whole
file has been read, because the bin records that name the bins and settle pass/fail for parts
without a valid pass/fail flag (HBR / SBR) come at the end of the file; until then only the
compact die columns (11 bytes per PRR) are held.

Truncation: a file that ends inside a record (or a compressed container that ended early)
yields every wafer; the wafer(s) still in progress get ``partial=True`` and a note saying where
the data stops (a WIR without its WRR at the end of the file is partial too). Cut before any
wafer started, it raises :class:`TruncatedError`; a file that simply lacks its MRR gets a note.

Errors: a REC_TYP the specification does not define (the usual sign of a corrupt ``REC_LEN``
before it; the previous record is named), a field that runs past its record, a PRR without its
required fields, a bad FAR or more parts than ``ReadOptions.max_dies`` raise
:class:`FormatError` with the byte offset and the record (e.g. ``PRR #1,204``). Undefined
REC_SUB values inside a defined REC_TYP, and the types 180 / 181 the specification reserves for
Image / IG900 software, are skipped (the former counted in a note).

Measured on a 235 MB lot file: ~90-115x the throughput of pystdf, ~55-80x Semi-ATE STDF; see
``benchmarks/README.md``.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, ClassVar, Final

import numpy as np

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.stdf._records import (
    COLLECT_PRR,
    DECODE,
    FAR,
    HBR,
    MIR,
    MRR,
    PRR,
    PRR_REQUIRED_BYTES,
    SBR,
    SDR,
    UNKNOWN_SUB,
    WCR,
    WIR,
    WRR,
    FieldError,
    PrrDecoder,
    Wir,
    Wrr,
    build_action_table,
    decode_bin,
    decode_mir,
    decode_sdr,
    decode_wcr,
    decode_wir,
    decode_wrr,
    far_byte_order,
    record_name,
)
from waferscope.protocols.formats.stdf._wafers import (
    FORMAT_NAME,
    FileContext,
    WaferInProgress,
    build_wafer_map,
)
from waferscope.protocols.wafermap import WaferMap

CHUNK_SIZE: Final = 4 << 20
_MAX_RECORD: Final = 4 + 0xFFFF  # header plus the largest REC_LEN
_ACTIONS: Final = {order: build_action_table(order) for order in "<>"}
_FAR_SIGNATURES: Final = (b"\x00\x02\x00\x0a", b"\x02\x00\x00\x0a")


class StdfFormat:
    """STDF V4 reader and writer (either byte order)."""

    name: ClassVar[str] = FORMAT_NAME
    title: ClassVar[str] = (
        "STDF V4 tester data (Teradyne Standard Test Data Format), either byte order"
    )

    def sniff(self, head: bytes) -> bool:
        return head[:4] in _FAR_SIGNATURES

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        maps, error = StdfScan(source, options).run()
        yield from maps  # what was read before corrupt data is not lost ...
        if error is not None:
            raise error  # ... and the corruption is still reported

    def write(self, maps: list[WaferMap], stream: BinaryIO) -> None:
        from waferscope.protocols.formats.stdf.writer import write_stdf

        write_stdf(maps, stream)


class StdfScan:
    """One pass over one STDF stream (see the module docstring for the rules)."""

    def __init__(self, source: Source, options: ReadOptions) -> None:
        self.source = source
        self.options = options
        self._buf = b""
        self._base = 0  # byte offset of _buf[0] in the stream
        self._pending: list[int] = []  # positions (in _buf) of PRRs not decoded yet
        self._prr_total = 0
        self._counts: Counter[int] = Counter()
        self._unknown: Counter[int] = Counter()
        self._open: dict[int, WaferInProgress] = {}
        self._wafers: list[WaferInProgress] = []
        self._saw_mrr = False
        self.ctx: FileContext
        self._decoder: PrrDecoder

    # ------------------------------------------------------------------------ errors
    def _error(self, reason: str, offset: int | None, record: str | None = None) -> FormatError:
        return FormatError(
            reason, format=FORMAT_NAME, source=self.source.name, offset=offset, record=record
        )

    def _label(self, code: int) -> str:
        return f"{record_name(code)} #{self._counts[code]:,}"

    # ------------------------------------------------------------------------ main loop
    def run(self) -> tuple[list[WaferMap], FormatError | None]:
        """Every wafer, plus the error that stopped the scan early (None when it did not).

        On corrupt data after at least one wafer started, the wafers read so far are kept: those
        whose WRR was seen are complete, the ones still open are flagged partial.
        """
        head = self.source.head
        try:
            order, _ = far_byte_order(head)
        except ValueError as exc:
            if len(head) < 6 and head[:4] in _FAR_SIGNATURES:
                raise TruncatedError(
                    str(exc), format=FORMAT_NAME, source=self.source.name, offset=len(head)
                ) from None
            raise self._error(str(exc), 0, "FAR") from None
        self.ctx = FileContext(self.source.name, order, self.options.retest)
        self._decoder = PrrDecoder(order)
        error: FormatError | None = None
        try:
            end, tail = self._walk(struct.Struct(order + "HH").unpack_from)
            self._finish(end, tail)
        except FormatError as exc:
            if not self._wafers or isinstance(exc, TruncatedError):
                raise
            error = exc
            self._salvage(exc)
        return [build_wafer_map(self.ctx, w, i) for i, w in enumerate(self._wafers)], error

    def _salvage(self, exc: FormatError) -> None:
        """Keep what came before corrupt data: decode the PRRs already seen, flag open wafers."""
        try:
            self._flush_prrs()
        except FormatError:
            self._pending.clear()
        where = f"byte {exc.location.offset:,}" if exc.location.offset is not None else "?"
        for wafer in {id(w): w for w in self._open.values()}.values():
            wafer.partial = True
            wafer.notes.append(
                f"incomplete: reading stopped at corrupt data ({where}): {exc.reason}"
            )

    def _walk(self, unpack: Callable[[bytes, int], tuple[Any, ...]]) -> tuple[int, bytes]:
        """Walk every record header; returns the offset where data stops and the cut-off bytes."""
        stream = self.source.stream
        actions = _ACTIONS[self.ctx.byte_order]
        collect = self._pending.append
        dispatch = self._dispatch
        buf = b""
        p = base = 0
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if chunk:
                base += p
                buf = buf[p:] + chunk if p < len(buf) else chunk
                p = 0
                self._buf, self._base = buf, base
            n = len(buf)
            # Hot loop: a record starting at or before `safe` ends inside the buffer whatever
            # its REC_LEN (at most 65,535), so no end check is needed here.
            safe = n - _MAX_RECORD
            while p <= safe:
                length, code = unpack(buf, p)
                action = actions[code]
                if action:
                    if action == COLLECT_PRR:
                        collect(p)
                    else:
                        dispatch(action, p, p + 4 + length)
                p += 4 + length
            # The last 64 KiB: stop at the first record that does not end inside the buffer.
            last = n - 4
            while p <= last:
                length, code = unpack(buf, p)
                end = p + 4 + length
                if end > n:
                    break
                action = actions[code]
                if action:
                    if action == COLLECT_PRR:
                        collect(p)
                    else:
                        dispatch(action, p, end)
                p = end
            self._flush_prrs()
            if not chunk:
                return base + p, buf[p:]

    def _dispatch(self, action: int, p: int, end: int) -> None:
        offset = self._base + p
        code = (self._buf[p + 2] << 8) | self._buf[p + 3]
        if action == UNKNOWN_SUB:
            self._unknown[code] += 1
            return
        if action != DECODE:
            raise self._error(
                f"REC_TYP {code >> 8} (REC_SUB {code & 0xFF}) is not defined by STDF V4: "
                f"the data is corrupt{self._previous_record(p)}",
                offset,
            )
        self._counts[code] += 1
        body = self._buf[p + 4 : end]
        try:
            self._decode(code, body, offset)
        except FieldError as exc:
            raise self._error(str(exc), offset, self._label(code)) from None

    def _previous_record(self, p: int) -> str:
        """Names the record before position ``p`` of the buffer (error path only)."""
        q = prev = 0
        while q < p:
            prev = q
            length = struct.unpack_from(self.ctx.byte_order + "H", self._buf, q)[0]
            q += 4 + length
        if q != p or p == 0:
            return ""
        code = (self._buf[prev + 2] << 8) | self._buf[prev + 3]
        return f" (the {record_name(code)} at byte {self._base + prev:,} may have a wrong REC_LEN)"

    def _decode(self, code: int, body: bytes, offset: int) -> None:
        order = self.ctx.byte_order
        if code in (WIR, WRR):
            self._flush_prrs()
            if code == WIR:
                self._start_wafer(decode_wir(body, order), offset)
            else:
                self._end_wafer(decode_wrr(body, order))
        elif code == MIR:
            if self.ctx.mir is None:
                self.ctx.mir = decode_mir(body, order)
        elif code == SDR:
            self.ctx.sdrs.append(decode_sdr(body, order))
        elif code == WCR:
            if self.ctx.wcr is None:
                self.ctx.wcr = decode_wcr(body, order)
        elif code == MRR:
            self._saw_mrr = True
        elif code == HBR:
            self.ctx.hard_bins.append(decode_bin(body, order))
        elif code == SBR:
            self.ctx.soft_bins.append(decode_bin(body, order))
        elif code == FAR and offset > 0:
            try:
                again, _ = far_byte_order(self._buf[offset - self._base : offset - self._base + 6])
            except ValueError as exc:
                raise FieldError(str(exc)) from None
            if again != order:
                raise FieldError("a second FAR declares a different byte order")

    # ------------------------------------------------------------------------ wafers
    def _start_wafer(self, wir: Wir, offset: int) -> None:
        previous = self._open.get(wir.head)
        if previous is not None:
            self._close(previous)
            if previous.wir is not None:
                previous.notes.append(f"no WRR before the next WIR of head {wir.head}")
        wafer = WaferInProgress(head=wir.head, offset=offset, wir=wir)
        self._open[wir.head] = wafer
        self._wafers.append(wafer)

    def _end_wafer(self, wrr: Wrr) -> None:
        wafer = self._open.get(wrr.head) or self._only_open_wafer()
        if wafer is not None:
            if wafer.head != wrr.head:
                wafer.notes.append(
                    f"closed by a WRR of head {wrr.head}, the only wafer open (WIR head "
                    f"{wafer.head})"
                )
            wafer.wrr = wrr
            self._close(wafer)

    def _close(self, wafer: WaferInProgress) -> None:
        for head in [h for h, w in self._open.items() if w is wafer]:
            del self._open[head]

    def _only_open_wafer(self) -> WaferInProgress | None:
        """The one wafer a WIR has opened, when exactly one is open (else None)."""
        opened = {id(w): w for w in self._open.values() if w.wir is not None}
        return next(iter(opened.values())) if len(opened) == 1 else None

    def _wafer_for(self, head: int, offset: int) -> WaferInProgress:
        """The open wafer of a head. A head without one joins the only wafer a WIR opened
        (writers that put another HEAD_NUM in the WIR than in the PRRs); otherwise its parts
        form a wafer of their own."""
        wafer = self._open.get(head)
        if wafer is not None:
            return wafer
        wafer = self._only_open_wafer()
        if wafer is not None:
            wafer.notes.append(
                f"PRRs of head {head} are assigned to the only wafer open (WIR head {wafer.head})"
            )
        else:
            wafer = WaferInProgress(head=head, offset=offset)
            wafer.notes.append(
                f"parts of head {head} outside any WIR/WRR pair are collected as one wafer"
            )
            self._wafers.append(wafer)
        self._open[head] = wafer
        return wafer

    def _flush_prrs(self) -> None:
        """Decode the remembered PRRs of the current buffer and hand them to their wafers."""
        pending = self._pending
        if not pending:
            return
        data = np.frombuffer(self._buf, dtype=np.uint8)
        pos = np.array(pending, dtype=np.int64)
        pending.clear()
        decoder = self._decoder
        lengths = decoder.lengths(data, pos)
        first = self._prr_total
        short = lengths < PRR_REQUIRED_BYTES
        if short.any():
            i = int(np.argmax(short))
            raise self._error(
                f"the record is {int(lengths[i])} bytes long; HEAD_NUM through HARD_BIN "
                f"({PRR_REQUIRED_BYTES} bytes) are required",
                self._base + int(pos[i]),
                f"PRR #{first + i + 1:,}",
            )
        self._prr_total += int(pos.shape[0])
        self._counts[PRR] = self._prr_total
        if self._prr_total > self.options.max_dies:
            raise self._error(
                f"more than {self.options.max_dies:,} parts (ReadOptions.max_dies)",
                self._base + int(pos[-1]),
                f"PRR #{self._prr_total:,}",
            )
        batch = decoder.decode(data, pos, lengths)
        heads = batch.head
        if bool((heads == heads[0]).all()):
            self._wafer_for(int(heads[0]), self._base + int(pos[0])).add(batch)
            return
        values, first_rows = np.unique(heads, return_index=True)
        for h, row in sorted(
            zip(values.tolist(), first_rows.tolist(), strict=True), key=lambda t: t[1]
        ):
            self._wafer_for(int(h), self._base + int(pos[row])).add(batch.take(heads == h))

    def _finish(self, end: int, tail: bytes) -> None:
        """After the last complete record: mark unfinished wafers, say where data stopped."""
        order = self.ctx.byte_order
        cut: str | None = None
        if tail:
            if len(tail) >= 4:
                length = struct.unpack_from(order + "H", tail)[0]
                code = (tail[2] << 8) | tail[3]
                cut = (
                    f"the data ends at byte {end + len(tail):,} inside a {record_name(code)} "
                    f"that starts at byte {end:,} ({len(tail) - 4:,} of {length:,} bytes present)"
                )
            else:
                cut = f"the data ends at byte {end + len(tail):,} inside a record header"
        elif self.source.truncated:
            cut = f"the compressed data ends early (after byte {end:,})"
        if self._unknown:
            kinds = ", ".join(
                f"{c >> 8}/{c & 0xFF} x{n:,}" for c, n in sorted(self._unknown.items())
            )
            self.ctx.notes.append(f"skipped records of sub-types STDF V4 does not define: {kinds}")
        for wafer in {id(w): w for w in self._open.values()}.values():
            if cut is not None:
                wafer.partial = True
                wafer.notes.append(f"incomplete: {cut}")
            elif wafer.wir is not None:
                wafer.partial = True
                wafer.notes.append(
                    f"incomplete: the file ends (byte {end:,}) before this wafer's WRR"
                )
        if not self._wafers and (cut is not None or not self._saw_mrr):
            where = cut or f"the file ends at byte {end:,} without its MRR"
            raise TruncatedError(
                f"{where}, before any part was tested",
                format=FORMAT_NAME,
                source=self.source.name,
                offset=end,
            )
        if cut is not None and not self._open:
            self.ctx.notes.append(f"the file is cut short ({cut}); the wafers themselves ended")
        elif cut is None and not self._saw_mrr:
            self.ctx.notes.append(f"the file ends at byte {end:,} without an MRR (cut short?)")
