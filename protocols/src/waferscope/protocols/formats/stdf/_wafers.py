"""Turning decoded STDF V4 records into WaferMaps: dies per wafer, pass/fail, retests, metadata.

Rules (STDF V4 specification, PRR / HBR / SBR / WCR / MIR / SDR / WRR field notes):

* **Pass/fail.** PRR ``PART_FLG`` bit 3 is the result (0 = passed, 1 = failed) unless bit 4 says
  "no pass/fail indication" (bit 3 invalid). For those parts the hardware bin's ``HBIN_PF`` from
  the HBR decides ('P' / 'F'), else the software bin's ``SBIN_PF`` from the SBR; where neither
  says, hard bin 1 counts as pass (the near-universal convention) and a note says so.
* **Coordinates.** ``X_COORD`` / ``Y_COORD`` of -32768 mean "invalid"; such parts cannot be placed
  on a map and are dropped with a note (a file of packaged parts yields an empty map).
* **Retests.** The same (x, y) tested more than once is a retest (``PART_FLG`` bits 0/1 only say
  which earlier record a part supersedes). :class:`RetestPolicy` picks what is kept; the counts
  go into ``notes``.
* **Metadata.** MIR fields go into :class:`WaferInfo` (``LOT_ID``, ``PART_TYP``, ``NODE_NAM`` as
  tester id, ``JOB_NAM`` as program) and ``info.extra`` (sublot, operator, temperature, ...);
  SDR equipment ids (``probe_card_id``, ``load_board_id``, ``prober_id``, ...) and WRR ids
  (``fab_wafer_id``, ``frame_id``, ``mask_id``) and bin names (``hard_bin.<n>.name``,
  ``hard_bin.<n>.pass``, same for ``soft_bin``) go into ``info.extra``. STDF times are seconds
  since 1970 in the tester's *local* time zone, so they become naive datetimes.
* **WCR.** ``WF_UNITS`` 1 = inches, 2 = cm, 3 = mm, 4 = mils (0 = unknown, sizes then unused);
  ``WF_FLAT`` U/D/L/R is the side of the flat (or notch: STDF does not tell them apart, so
  ``mark_kind`` stays unknown); ``POS_X`` L/R and ``POS_Y`` U/D are the directions in which the
  coordinates grow; ``CENTER_X`` / ``CENTER_Y`` of -32768 are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.formats.base import RetestPolicy, select_retests
from waferscope.protocols.formats.stdf._records import (
    COORD_MISSING,
    NO_U4,
    BinRecord,
    Mir,
    PrrBatch,
    Sdr,
    Wcr,
    Wir,
    Wrr,
)
from waferscope.protocols.wafermap import (
    DieTable,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

FORMAT_NAME: Final = "stdf"

PART_SUPERSEDES_ID: Final = 0x01  # PART_FLG bit 0
PART_SUPERSEDES_XY: Final = 0x02  # PART_FLG bit 1
PART_ABNORMAL_END: Final = 0x04  # PART_FLG bit 2
PART_FAILED: Final = 0x08  # PART_FLG bit 3
PART_NO_PASS_FAIL: Final = 0x10  # PART_FLG bit 4: bit 3 is invalid

_EPOCH: Final = datetime(1970, 1, 1)
_MM_PER_UNIT: Final = {1: 25.4, 2: 10.0, 3: 1.0, 4: 0.0254}
_SIDES: Final = {"U": Side.UP, "D": Side.DOWN, "L": Side.LEFT, "R": Side.RIGHT}

MIR_EXTRA: Final = {
    "TSTR_TYP": "tester_type",
    "JOB_REV": "program_revision",
    "SBLOT_ID": "sublot_id",
    "OPER_NAM": "operator",
    "EXEC_TYP": "tester_exec_type",
    "EXEC_VER": "tester_exec_version",
    "TEST_COD": "test_code",
    "TST_TEMP": "test_temperature",
    "USER_TXT": "user_text",
    "AUX_FILE": "aux_file",
    "PKG_TYP": "package_type",
    "FAMLY_ID": "family_id",
    "DATE_COD": "date_code",
    "FACIL_ID": "facility_id",
    "FLOOR_ID": "floor_id",
    "PROC_ID": "process_id",
    "OPER_FRQ": "operation_frequency",
    "SPEC_NAM": "spec_name",
    "SPEC_VER": "spec_version",
    "FLOW_ID": "flow_id",
    "SETUP_ID": "setup_id",
    "DSGN_REV": "design_revision",
    "ENG_ID": "engineering_lot_id",
    "ROM_COD": "rom_code",
    "SERL_NUM": "tester_serial",
    "SUPR_NAM": "supervisor",
}

SDR_EXTRA: Final = {
    "HAND_TYP": "prober_type",
    "HAND_ID": "prober_id",
    "CARD_TYP": "probe_card_type",
    "CARD_ID": "probe_card_id",
    "LOAD_TYP": "load_board_type",
    "LOAD_ID": "load_board_id",
    "DIB_TYP": "dib_type",
    "DIB_ID": "dib_id",
    "CABL_TYP": "cable_type",
    "CABL_ID": "cable_id",
    "CONT_TYP": "contactor_type",
    "CONT_ID": "contactor_id",
    "LASR_TYP": "laser_type",
    "LASR_ID": "laser_id",
    "EXTR_TYP": "extra_equipment_type",
    "EXTR_ID": "extra_equipment_id",
}


def stdf_time(seconds: int) -> datetime | None:
    """An STDF U*4 time (seconds since 1970, tester local time; 0 = missing) as naive datetime."""
    return None if seconds == 0 else _EPOCH + timedelta(seconds=seconds)


@dataclass(slots=True)
class WaferInProgress:
    """Dies collected for one wafer (one WIR..WRR of one head, or parts outside any WIR)."""

    head: int
    offset: int  # byte offset of the WIR, or of the first PRR when there is no WIR
    wir: Wir | None = None
    wrr: Wrr | None = None
    batches: list[PrrBatch] = field(default_factory=list)
    parts: int = 0
    partial: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, batch: PrrBatch) -> None:
        self.batches.append(batch)
        self.parts += len(batch)


@dataclass(slots=True)
class FileContext:
    """What the whole file says, shared by every wafer in it."""

    source: str
    byte_order: str
    retest: RetestPolicy
    mir: Mir | None = None
    wcr: Wcr | None = None
    sdrs: list[Sdr] = field(default_factory=list)
    hard_bins: list[BinRecord] = field(default_factory=list)
    soft_bins: list[BinRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _bin_table(records: list[BinRecord], head: int) -> tuple[dict[int, bool], dict[int, str]]:
    """Pass/fail and names per bin number; the all-sites summary (HEAD_NUM 255) comes first."""
    ranked = sorted(records, key=lambda r: (r.head != 255, r.head != head))
    pass_fail: dict[int, bool] = {}
    names: dict[int, str] = {}
    for r in ranked:
        if r.head not in (255, head):
            continue
        if r.number not in pass_fail and r.pass_fail in ("P", "F"):
            pass_fail[r.number] = r.pass_fail == "P"
        if r.number not in names and r.name:
            names[r.number] = r.name
    return pass_fail, names


def _pass_fail_table(pass_fail: dict[int, bool]) -> npt.NDArray[np.int8]:
    table = np.full(65536, -1, dtype=np.int8)
    for number, passed in pass_fail.items():
        table[number] = 1 if passed else 0
    return table


def _resolve_pass_fail(
    flag: npt.NDArray[np.uint8],
    hard_bin: npt.NDArray[np.uint16],
    soft_bin: npt.NDArray[np.uint16],
    hard_pf: dict[int, bool],
    soft_pf: dict[int, bool],
    notes: list[str],
) -> npt.NDArray[np.bool_]:
    passed: npt.NDArray[np.bool_] = (flag & PART_FAILED) == 0
    unflagged = np.flatnonzero(flag & PART_NO_PASS_FAIL)
    if unflagged.size == 0:
        return passed
    hard, soft = hard_bin[unflagged], soft_bin[unflagged]
    by_hbr = _pass_fail_table(hard_pf)[hard]  # 1 pass, 0 fail, -1 not said
    by_sbr = _pass_fail_table(soft_pf)[soft]
    use_hbr, use_sbr = by_hbr >= 0, (by_hbr < 0) & (by_sbr >= 0)
    passed[unflagged] = np.where(use_hbr, by_hbr == 1, np.where(use_sbr, by_sbr == 1, hard == 1))
    by_hard, by_soft = int(np.count_nonzero(use_hbr)), int(np.count_nonzero(use_sbr))
    by_convention = int(unflagged.size) - by_hard - by_soft
    parts = [f"{by_hard:,} by HBR pass/fail"] if by_hard else []
    if by_soft:
        parts.append(f"{by_soft:,} by SBR pass/fail")
    if by_convention:
        parts.append(f"{by_convention:,} by the 'hard bin 1 = pass' convention")
    notes.append(
        f"{unflagged.size:,} parts carry no pass/fail flag (PRR PART_FLG bit 4); "
        f"decided {', '.join(parts)}"
    )
    return passed


def _extra(
    ctx: FileContext,
    wafer: WaferInProgress,
    hard: dict[int, str],
    soft: dict[int, str],
    hard_pf: dict[int, bool],
    soft_pf: dict[int, bool],
) -> dict[str, str]:
    extra: dict[str, str] = {
        "byte_order": "big-endian" if ctx.byte_order == ">" else "little-endian"
    }
    if ctx.mir is not None:
        mir = ctx.mir
        for stdf_name, key in MIR_EXTRA.items():
            if mir.strings.get(stdf_name):
                extra[key] = mir.strings[stdf_name]
        extra["station"] = str(mir.stat_num)
        if mir.mode_cod.strip():
            extra["test_mode"] = mir.mode_cod
        if mir.rtst_cod.strip():
            extra["lot_retest_code"] = mir.rtst_cod
        setup = stdf_time(mir.setup_t)
        if setup is not None:
            extra["setup_time"] = setup.isoformat()
    sdrs = [s for s in ctx.sdrs if s.head == wafer.head] or ctx.sdrs
    for stdf_name, key in SDR_EXTRA.items():
        values = list(dict.fromkeys(s.strings[stdf_name] for s in sdrs if s.strings[stdf_name]))
        if values:
            extra[key] = ", ".join(values)
    sites = sorted({site for s in sdrs for site in s.sites})
    if sites:
        extra["test_sites"] = ",".join(str(s) for s in sites)
    wrr = wafer.wrr
    if wrr is not None:
        for key, value in (
            ("fab_wafer_id", wrr.fabwf_id),
            ("frame_id", wrr.frame_id),
            ("mask_id", wrr.mask_id),
            ("wafer_description", wrr.usr_desc),
            ("wafer_exec_description", wrr.exc_desc),
        ):
            if value:
                extra[key] = value
        for key, count in (
            ("parts_tested", wrr.part_cnt),
            ("parts_retested", wrr.rtst_cnt),
            ("parts_aborted", wrr.abrt_cnt),
            ("parts_good", wrr.good_cnt),
            ("parts_functional", wrr.func_cnt),
        ):
            if count != NO_U4:
                extra[key] = str(count)
    for prefix, names, pf in (("hard_bin", hard, hard_pf), ("soft_bin", soft, soft_pf)):
        for number in sorted(set(names) | set(pf)):
            if number in names:
                extra[f"{prefix}.{number}.name"] = names[number]
            if number in pf:
                extra[f"{prefix}.{number}.pass"] = "true" if pf[number] else "false"
    return extra


def _geometry(
    wcr: Wcr | None, notes: list[str]
) -> tuple[dict[str, float | int | None], Orientation]:
    if wcr is None:
        notes.append("no WCR record: orientation unknown (x assumed to grow right, y down)")
        return {}, Orientation()
    geo: dict[str, float | int | None] = {}
    scale = _MM_PER_UNIT.get(wcr.wf_units)
    if scale is None and max(wcr.wafr_siz, wcr.die_ht, wcr.die_wid) > 0:
        notes.append(f"WCR WF_UNITS {wcr.wf_units} is not a known unit: sizes are not used")

    def size(value: float, factor: float) -> float | None:
        if scale is None or not np.isfinite(value) or value <= 0:
            return None
        # R*4 carries ~7 significant digits: keep 6 so that 0.4392 cm reads as 4392 um.
        return float(f"{float(value) * scale * factor:.6g}")

    geo["wafer_size_mm"] = size(wcr.wafr_siz, 1.0)
    geo["die_width_um"] = size(wcr.die_wid, 1000.0)
    geo["die_height_um"] = size(wcr.die_ht, 1000.0)
    geo["center_x"] = None if wcr.center_x == COORD_MISSING else wcr.center_x
    geo["center_y"] = None if wcr.center_y == COORD_MISSING else wcr.center_y
    flat = _SIDES.get(wcr.wf_flat.upper())
    pos_x = _SIDES.get(wcr.pos_x.upper())
    pos_y = _SIDES.get(wcr.pos_y.upper())
    if pos_x not in (Side.LEFT, Side.RIGHT):
        notes.append(f"WCR POS_X {wcr.pos_x!r} is not L or R: x assumed to grow right")
        pos_x = Side.RIGHT
    if pos_y not in (Side.UP, Side.DOWN):
        notes.append(f"WCR POS_Y {wcr.pos_y!r} is not U or D: y assumed to grow down")
        pos_y = Side.DOWN
    return geo, Orientation(mark=flat, mark_kind=None, x_increases=pos_x, y_increases=pos_y)


def build_wafer_map(ctx: FileContext, wafer: WaferInProgress, index: int) -> WaferMap:
    """The finished WaferMap of one collected wafer."""
    notes = list(wafer.notes)

    dies = PrrBatch.concat(wafer.batches)
    placed = (dies.x != COORD_MISSING) & (dies.y != COORD_MISSING)
    if not placed.all():
        missing = int(placed.shape[0] - np.count_nonzero(placed))
        notes.append(f"{missing:,} parts have no valid X/Y coordinates (-32768) and are left out")
        dies = dies.take(placed)
    abnormal = int(np.count_nonzero(dies.flag & PART_ABNORMAL_END))
    if abnormal:
        notes.append(f"{abnormal:,} parts ended testing abnormally (PRR PART_FLG bit 2)")
    flagged = int(np.count_nonzero(dies.flag & (PART_SUPERSEDES_ID | PART_SUPERSEDES_XY)))
    if flagged:
        notes.append(f"{flagged:,} PRRs are flagged as retests (PART_FLG bit 0 or 1)")

    hard_pf, hard_names = _bin_table(ctx.hard_bins, wafer.head)
    soft_pf, soft_names = _bin_table(ctx.soft_bins, wafer.head)
    passed = _resolve_pass_fail(dies.flag, dies.hard_bin, dies.soft_bin, hard_pf, soft_pf, notes)
    keep, retested, extra_results = select_retests(dies.x, dies.y, passed, ctx.retest)
    if retested:
        kept = (
            "kept every result"
            if ctx.retest is RetestPolicy.ALL
            else (f"kept the {ctx.retest.value} result of each")
        )
        notes.append(
            f"retests: {retested:,} dies tested more than once, {extra_results:,} extra "
            f"results; retest policy '{ctx.retest.value}' {kept}"
        )
    if keep.shape[0] != len(dies):
        dies, passed = dies.take(keep), passed[keep]

    def bins(col: npt.NDArray[np.uint16]) -> npt.NDArray[np.int32]:
        out = col.astype(np.int32)
        out[out == 65535] = -1
        return out

    table = DieTable.build(
        x=dies.x,
        y=dies.y,
        passed=passed,
        hard_bin=bins(dies.hard_bin),
        soft_bin=bins(dies.soft_bin),
        site=dies.site,
        head=dies.head,
    )
    geo, orientation = _geometry(ctx.wcr, notes)
    wir, wrr, mir = wafer.wir, wafer.wrr, ctx.mir
    wafer_id = (wir.wafer_id if wir else "") or (wrr.wafer_id if wrr else "")
    if wrr is not None and wrr.part_cnt not in (NO_U4, wafer.parts):
        notes.append(
            f"WRR PART_CNT says {wrr.part_cnt:,} parts, the file holds {wafer.parts:,} PRRs"
        )
    start = stdf_time(wir.start_t) if wir else (stdf_time(mir.start_t) if mir else None)
    strings = mir.strings if mir else {}
    info = WaferInfo(
        lot_id=strings.get("LOT_ID") or None,
        wafer_id=wafer_id or None,
        tester_id=strings.get("NODE_NAM") or None,
        program=strings.get("JOB_NAM") or None,
        part_type=strings.get("PART_TYP") or None,
        start_time=start,
        end_time=stdf_time(wrr.finish_t) if wrr else None,
        extra=_extra(ctx, wafer, hard_names, soft_names, hard_pf, soft_pf),
        **geo,  # type: ignore[arg-type]
    )
    return WaferMap(
        dies=table,
        provenance=Provenance(ctx.source, FORMAT_NAME, wafer_index=index, offset=wafer.offset),
        info=info,
        orientation=orientation,
        partial=wafer.partial,
        notes=tuple(notes + ctx.notes),
    )
