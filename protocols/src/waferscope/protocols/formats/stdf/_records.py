"""STDF V4 record layouts: record codes, the header walk tables, and field decoders.

Everything here follows the public *Standard Test Data Format (STDF) Specification, Version 4*
(Teradyne) and the record types added by its *V4-2007* addendum. The parts that matter:

* Every record is ``REC_LEN`` (U*2, bytes after the 4-byte header), ``REC_TYP`` (U*1) and
  ``REC_SUB`` (U*1), then ``REC_LEN`` bytes of fields. Integers and floats use the byte order
  that the File Attributes Record (FAR, always the first record) declares in ``CPU_TYPE``:
  1 = Sun (IEEE, big-endian), 2 = PC (IEEE, little-endian); 0 = DEC PDP-11/VAX (VAX floats,
  not supported here); 3..255 are reserved.
* "Optional fields at the end of a record may be omitted": a record may stop after any field,
  and every omitted field takes its missing/invalid value (string length 0, ``65535`` for a
  missing SOFT_BIN, ``-32768`` for a missing X_COORD / Y_COORD, a space for a missing C*1, ...).
  A field that *starts* inside the record but does not fit is corruption, not omission.
* ``C*n`` strings are one unsigned length byte plus that many characters (at most 255). Text is
  decoded as Latin-1, which never fails, and stripped; an empty string means "missing".

Only the records a wafer map needs are decoded (MIR, SDR, WCR, WIR, WRR, PRR, HBR, SBR, FAR);
every other record is skipped by its length without being looked at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt


def kind_code(rec_typ: int, rec_sub: int) -> int:
    """One integer for a (REC_TYP, REC_SUB) pair, as the header walk computes it."""
    return (rec_typ << 8) | rec_sub


# (REC_TYP, REC_SUB) -> name, for every record of STDF V4 and (marked *) the V4-2007 addendum.
# fmt: off
_RECORDS: Final = {
    (0, 10): "FAR", (0, 20): "ATR", (0, 30): "VUR",  # *VUR
    (1, 10): "MIR", (1, 20): "MRR", (1, 30): "PCR", (1, 40): "HBR", (1, 50): "SBR",
    (1, 60): "PMR", (1, 62): "PGR", (1, 63): "PLR", (1, 70): "RDR", (1, 80): "SDR",
    (1, 90): "PSR", (1, 91): "NMR", (1, 92): "CNR", (1, 93): "SSR", (1, 94): "CDR",  # *all
    (2, 10): "WIR", (2, 20): "WRR", (2, 30): "WCR",
    (5, 10): "PIR", (5, 20): "PRR",
    (10, 30): "TSR",
    (15, 10): "PTR", (15, 15): "MPR", (15, 20): "FTR", (15, 30): "STR",  # *STR
    (20, 10): "BPS", (20, 20): "EPS",
    (50, 10): "GDR", (50, 30): "DTR",
}
# fmt: on
RECORD_NAMES: Final[dict[int, str]] = {kind_code(t, s): n for (t, s), n in _RECORDS.items()}

FAR: Final = kind_code(0, 10)
MIR: Final = kind_code(1, 10)
MRR: Final = kind_code(1, 20)
PCR: Final = kind_code(1, 30)
HBR: Final = kind_code(1, 40)
SBR: Final = kind_code(1, 50)
SDR: Final = kind_code(1, 80)
WIR: Final = kind_code(2, 10)
WRR: Final = kind_code(2, 20)
WCR: Final = kind_code(2, 30)
PIR: Final = kind_code(5, 10)
PRR: Final = kind_code(5, 20)
PTR: Final = kind_code(15, 10)
EPS: Final = kind_code(20, 20)

# REC_TYP groups the specification defines; 180 and 181 are "reserved for use by Image / IG900
# software" and are skipped like any record we do not need.
KNOWN_REC_TYPES: Final = frozenset({0, 1, 2, 5, 10, 15, 20, 50, 180, 181})

# What the header walk does with each kind code (a 65,536-entry table, one lookup per record).
SKIP: Final = 0  # a record we do not need: jump over it
COLLECT_PRR: Final = 1  # a PRR: remember its position, decode a whole batch with numpy
DECODE: Final = 2  # a rare record we decode in Python (MIR, WIR, WRR, ...)
UNKNOWN_SUB: Final = 3  # a REC_SUB the spec does not define inside a known REC_TYP: skip, count
UNKNOWN_TYP: Final = 4  # a REC_TYP the spec does not define: the stream is corrupt


def build_action_table(order: str) -> bytes:
    """The 65,536-entry lookup the header walk indexes with the header's last two bytes.

    The walk reads REC_LEN and the (REC_TYP, REC_SUB) byte pair with one ``struct`` call in the
    file's byte order, so for little-endian files the pair arrives as ``REC_SUB << 8 | REC_TYP``;
    the table is laid out to match.
    """
    table = bytearray(65536)
    for code in range(65536):
        if (code >> 8) not in KNOWN_REC_TYPES:
            table[code] = UNKNOWN_TYP
        elif (code >> 8) < 180 and code not in RECORD_NAMES:
            table[code] = UNKNOWN_SUB
    for code in (FAR, MIR, SDR, WIR, WRR, WCR, HBR, SBR, MRR):
        table[code] = DECODE
    table[PRR] = COLLECT_PRR
    if order == "<":
        return bytes(table[((c & 0xFF) << 8) | (c >> 8)] for c in range(65536))
    return bytes(table)


def record_name(code: int) -> str:
    return RECORD_NAMES.get(code, f"record {code >> 8}/{code & 0xFF}")


NO_U4: Final = 0xFFFFFFFF
BYTE_ORDER_BY_CPU: Final = {1: ">", 2: "<"}


class FieldError(ValueError):
    """A field runs past the end of its record (corruption, not an omitted trailing field)."""


class FieldCursor:
    """Reads the fields of one record body in order; omitted trailing fields give defaults."""

    __slots__ = ("_body", "_i2", "_order", "_pos", "_r4", "_u2", "_u4")

    def __init__(self, body: bytes, order: str) -> None:
        self._body = body
        self._pos = 0
        self._order = order
        self._u2 = struct.Struct(order + "H").unpack_from
        self._u4 = struct.Struct(order + "I").unpack_from
        self._i2 = struct.Struct(order + "h").unpack_from
        self._r4 = struct.Struct(order + "f").unpack_from

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._body)

    def _take(self, size: int, name: str) -> int | None:
        pos = self._pos
        if pos >= len(self._body):
            return None
        if pos + size > len(self._body):
            raise FieldError(f"field {name} runs past the end of the record")
        self._pos = pos + size
        return pos

    def u1(self, name: str, default: int = 0) -> int:
        pos = self._take(1, name)
        return default if pos is None else self._body[pos]

    def u2(self, name: str, default: int = 0) -> int:
        pos = self._take(2, name)
        return default if pos is None else int(self._u2(self._body, pos)[0])

    def u4(self, name: str, default: int = 0) -> int:
        pos = self._take(4, name)
        return default if pos is None else int(self._u4(self._body, pos)[0])

    def i2(self, name: str, default: int = -32768) -> int:
        pos = self._take(2, name)
        return default if pos is None else int(self._i2(self._body, pos)[0])

    def r4(self, name: str, default: float = 0.0) -> float:
        pos = self._take(4, name)
        return default if pos is None else float(self._r4(self._body, pos)[0])

    def c1(self, name: str) -> str:
        pos = self._take(1, name)
        return " " if pos is None else chr(self._body[pos])

    def cn(self, name: str) -> str:
        """A C*n string, decoded as Latin-1 and stripped ("" when omitted or empty)."""
        pos = self._take(1, name)
        if pos is None:
            return ""
        n = self._body[pos]
        if not n:
            return ""
        if pos + 1 + n > len(self._body):
            raise FieldError(f"field {name} runs past the end of the record")
        self._pos = pos + 1 + n
        return self._body[pos + 1 : pos + 1 + n].decode("latin-1").strip(" \x00\t\r\n")

    def u1_array(self, count: int, name: str) -> list[int]:
        if not count:
            return []
        pos = self._take(count, name)
        return [] if pos is None else list(self._body[pos : pos + count])


# ---------------------------------------------------------------------------------- FAR
def far_byte_order(head: bytes) -> tuple[str, int]:
    """(byte order, STDF_VER) from the first six bytes; raises ValueError with the reason.

    The FAR's REC_LEN (always 2) shows the byte order on its own; CPU_TYPE must agree with it.
    """
    if len(head) < 6:
        raise ValueError("the file ends inside the FAR (File Attributes Record)")
    if head[2:4] != b"\x00\x0a" or head[:2] not in (b"\x00\x02", b"\x02\x00"):
        raise ValueError("the first record is not a FAR (REC_LEN=2, REC_TYP=0, REC_SUB=10)")
    cpu_type, version = head[4], head[5]
    order = BYTE_ORDER_BY_CPU.get(cpu_type)
    if order is None:
        what = (
            "DEC PDP-11/VAX data (VAX floating point) is not supported"
            if cpu_type == 0
            else "is not defined by STDF V4 (1 = big-endian, 2 = little-endian)"
        )
        raise ValueError(f"FAR CPU_TYPE {cpu_type}: {what}")
    header_order = ">" if head[:2] == b"\x00\x02" else "<"
    if header_order != order:
        raise ValueError(
            f"FAR CPU_TYPE {cpu_type} declares {'big' if order == '>' else 'little'}-endian data "
            "but the record header is stored in the other byte order"
        )
    if version != 4:
        raise ValueError(f"STDF version {version} is not supported (only STDF V4)")
    return order, version


# ---------------------------------------------------------------------------------- records
# C*n fields of the MIR (after its fixed fields) and of the SDR (after SITE_NUM), in order.
# fmt: off
MIR_STRINGS: Final = (
    "LOT_ID", "PART_TYP", "NODE_NAM", "TSTR_TYP", "JOB_NAM", "JOB_REV", "SBLOT_ID", "OPER_NAM",
    "EXEC_TYP", "EXEC_VER", "TEST_COD", "TST_TEMP", "USER_TXT", "AUX_FILE", "PKG_TYP", "FAMLY_ID",
    "DATE_COD", "FACIL_ID", "FLOOR_ID", "PROC_ID", "OPER_FRQ", "SPEC_NAM", "SPEC_VER", "FLOW_ID",
    "SETUP_ID", "DSGN_REV", "ENG_ID", "ROM_COD", "SERL_NUM", "SUPR_NAM",
)
SDR_STRINGS: Final = (
    "HAND_TYP", "HAND_ID", "CARD_TYP", "CARD_ID", "LOAD_TYP", "LOAD_ID", "DIB_TYP", "DIB_ID",
    "CABL_TYP", "CABL_ID", "CONT_TYP", "CONT_ID", "LASR_TYP", "LASR_ID", "EXTR_TYP", "EXTR_ID",
)
# fmt: on


@dataclass(slots=True)
class Mir:
    setup_t: int = 0
    start_t: int = 0
    stat_num: int = 0
    mode_cod: str = " "
    rtst_cod: str = " "
    strings: dict[str, str] = field(default_factory=dict)


def decode_mir(body: bytes, order: str) -> Mir:
    c = FieldCursor(body, order)
    mir = Mir(setup_t=c.u4("SETUP_T"), start_t=c.u4("START_T"), stat_num=c.u1("STAT_NUM"))
    mir.mode_cod = c.c1("MODE_COD")
    mir.rtst_cod = c.c1("RTST_COD")
    c.c1("PROT_COD")
    c.u2("BURN_TIM", 65535)
    c.c1("CMOD_COD")
    for name in MIR_STRINGS:
        mir.strings[name] = c.cn(name)
    return mir


@dataclass(slots=True)
class Sdr:
    head: int
    site_grp: int
    sites: list[int]
    strings: dict[str, str]


def decode_sdr(body: bytes, order: str) -> Sdr:
    c = FieldCursor(body, order)
    head, grp, count = c.u1("HEAD_NUM"), c.u1("SITE_GRP"), c.u1("SITE_CNT")
    sites = c.u1_array(count, "SITE_NUM")
    return Sdr(head, grp, sites, {name: c.cn(name) for name in SDR_STRINGS})


@dataclass(slots=True)
class Wir:
    head: int
    site_grp: int
    start_t: int
    wafer_id: str


def decode_wir(body: bytes, order: str) -> Wir:
    c = FieldCursor(body, order)
    head, grp = c.u1("HEAD_NUM"), c.u1("SITE_GRP", 255)
    return Wir(head, grp, c.u4("START_T"), c.cn("WAFER_ID"))


@dataclass(slots=True)
class Wrr:
    head: int
    site_grp: int
    finish_t: int
    part_cnt: int
    rtst_cnt: int
    abrt_cnt: int
    good_cnt: int
    func_cnt: int
    wafer_id: str
    fabwf_id: str
    frame_id: str
    mask_id: str
    usr_desc: str
    exc_desc: str


def decode_wrr(body: bytes, order: str) -> Wrr:
    c = FieldCursor(body, order)
    return Wrr(
        head=c.u1("HEAD_NUM"),
        site_grp=c.u1("SITE_GRP", 255),
        finish_t=c.u4("FINISH_T"),
        part_cnt=c.u4("PART_CNT", NO_U4),
        rtst_cnt=c.u4("RTST_CNT", NO_U4),
        abrt_cnt=c.u4("ABRT_CNT", NO_U4),
        good_cnt=c.u4("GOOD_CNT", NO_U4),
        func_cnt=c.u4("FUNC_CNT", NO_U4),
        wafer_id=c.cn("WAFER_ID"),
        fabwf_id=c.cn("FABWF_ID"),
        frame_id=c.cn("FRAME_ID"),
        mask_id=c.cn("MASK_ID"),
        usr_desc=c.cn("USR_DESC"),
        exc_desc=c.cn("EXC_DESC"),
    )


@dataclass(slots=True)
class Wcr:
    wafr_siz: float
    die_ht: float
    die_wid: float
    wf_units: int
    wf_flat: str
    center_x: int
    center_y: int
    pos_x: str
    pos_y: str


def decode_wcr(body: bytes, order: str) -> Wcr:
    c = FieldCursor(body, order)
    return Wcr(
        wafr_siz=c.r4("WAFR_SIZ"),
        die_ht=c.r4("DIE_HT"),
        die_wid=c.r4("DIE_WID"),
        wf_units=c.u1("WF_UNITS"),
        wf_flat=c.c1("WF_FLAT"),
        center_x=c.i2("CENTER_X"),
        center_y=c.i2("CENTER_Y"),
        pos_x=c.c1("POS_X"),
        pos_y=c.c1("POS_Y"),
    )


@dataclass(slots=True)
class BinRecord:
    """One HBR or SBR: a bin's pass/fail indication ('P', 'F' or unknown) and its name."""

    head: int
    site: int
    number: int
    count: int
    pass_fail: str
    name: str


def decode_bin(body: bytes, order: str) -> BinRecord:
    c = FieldCursor(body, order)
    head, site, number, count = c.u1("HEAD_NUM"), c.u1("SITE_NUM"), c.u2("BIN_NUM"), c.u4("CNT")
    return BinRecord(head, site, number, count, c.c1("BIN_PF").upper(), c.cn("BIN_NAM"))


# ---------------------------------------------------------------------------------- PRR batch
PRR_FIXED_BYTES: Final = 13  # HEAD_NUM .. Y_COORD
PRR_REQUIRED_BYTES: Final = 7  # HEAD_NUM .. HARD_BIN have no missing value: they must be there
SOFT_BIN_MISSING: Final = 65535
COORD_MISSING: Final = -32768


def _prr_dtype(order: str) -> np.dtype[np.void]:
    return np.dtype(
        {
            "names": ["head", "site", "flag", "num_test", "hard_bin", "soft_bin", "x", "y"],
            "formats": ["u1", "u1", "u1", *(order + t for t in ("u2", "u2", "u2", "i2", "i2"))],
            "offsets": [0, 1, 2, 3, 5, 7, 9, 11],
            "itemsize": PRR_FIXED_BYTES,
        }
    )


def _prr_defaults(order: str) -> npt.NDArray[np.uint8]:
    """Bytes of an all-omitted PRR tail: SOFT_BIN 65535, X_COORD / Y_COORD -32768."""
    tail = struct.pack(order + "Hhh", SOFT_BIN_MISSING, COORD_MISSING, COORD_MISSING)
    return np.frombuffer(bytes(PRR_REQUIRED_BYTES) + tail, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class PrrBatch:
    """Fixed PRR fields of a batch of records, as native-order numpy columns."""

    head: npt.NDArray[np.uint8]
    site: npt.NDArray[np.uint8]
    flag: npt.NDArray[np.uint8]
    hard_bin: npt.NDArray[np.uint16]
    soft_bin: npt.NDArray[np.uint16]
    x: npt.NDArray[np.int16]
    y: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.head.shape[0])

    def take(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> PrrBatch:
        return PrrBatch(
            head=self.head[rows],
            site=self.site[rows],
            flag=self.flag[rows],
            hard_bin=self.hard_bin[rows],
            soft_bin=self.soft_bin[rows],
            x=self.x[rows],
            y=self.y[rows],
        )

    @classmethod
    def concat(cls, batches: list[PrrBatch]) -> PrrBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls(
                head=np.zeros(0, np.uint8),
                site=np.zeros(0, np.uint8),
                flag=np.zeros(0, np.uint8),
                hard_bin=np.zeros(0, np.uint16),
                soft_bin=np.zeros(0, np.uint16),
                x=np.zeros(0, np.int16),
                y=np.zeros(0, np.int16),
            )
        return cls(
            head=np.concatenate([b.head for b in batches]),
            site=np.concatenate([b.site for b in batches]),
            flag=np.concatenate([b.flag for b in batches]),
            hard_bin=np.concatenate([b.hard_bin for b in batches]),
            soft_bin=np.concatenate([b.soft_bin for b in batches]),
            x=np.concatenate([b.x for b in batches]),
            y=np.concatenate([b.y for b in batches]),
        )


class PrrDecoder:
    """Decodes many PRRs at once from their header positions in a buffer (numpy gathers)."""

    def __init__(self, order: str) -> None:
        self.order = order
        self._dtype = _prr_dtype(order)
        self._defaults = _prr_defaults(order)
        self._columns = np.arange(PRR_FIXED_BYTES, dtype=np.int64)

    def lengths(
        self, data: npt.NDArray[np.uint8], pos: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        hi, lo = (data[pos], data[pos + 1]) if self.order == ">" else (data[pos + 1], data[pos])
        return (hi.astype(np.int64) << 8) | lo

    def decode(
        self,
        data: npt.NDArray[np.uint8],
        pos: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int64],
    ) -> PrrBatch:
        """Gather the 13 fixed bytes after each header; omitted trailing fields get defaults.

        The caller has checked that every record lies inside ``data`` and is long enough for
        the required fields.
        """
        idx = (pos + 4)[:, None] + self._columns[None, :]
        np.minimum(idx, data.shape[0] - 1, out=idx)
        raw = data[idx]
        short = lengths < PRR_FIXED_BYTES
        if short.any():
            omitted = self._columns[None, :] >= lengths[:, None]
            raw = np.where(omitted, self._defaults[None, :], raw)
        rec = np.ascontiguousarray(raw).view(self._dtype).reshape(-1)
        return PrrBatch(
            head=rec["head"].copy(),
            site=rec["site"].copy(),
            flag=rec["flag"].copy(),
            hard_bin=rec["hard_bin"].astype(np.uint16),
            soft_bin=rec["soft_bin"].astype(np.uint16),
            x=rec["x"].astype(np.int16),
            y=rec["y"].astype(np.int16),
        )
