"""SEMI E142 writer: WaferMaps to one namespaced ``MapData`` document.

Per wafer *i* (1-based) the document holds a top-level layout ``Wafer<i>`` (Dimension 1 x 1) with
the child device layout ``Devices<i>`` (Dimension = columns x rows, DeviceSize in mm when the die
size is known, ProductId = part type), a ``Substrate`` (SubstrateType Wafer, SubstrateId = wafer
id, LotId) and a ``SubstrateMap`` whose ``Overlay`` holds a 2DArray ``BinCodeMap``:

* codes are the hard bins, written ``HexaDecimal`` (two hex digits) when every code fits 0..254
  with ``NullBin="FF"``, else ``Integer2`` (four hex digits) with ``NullBin="FFFF"``;
* one ``BinDefinition`` per code: ``BinCount``, ``BinQuality`` Pass or Fail, ``Pick`` (true for
  Pass) and ``BinDescription`` (from ``info.extra["bin_names"]`` when present);
* dies without a hard bin, or whose hard bin both passes and fails on that wafer, get unused
  codes described as such (their hard bin changes on a round trip; nothing else does);
* ``AxisDirection`` follows the wafer's orientation and ``OriginLocation`` is the corner the axes
  grow from, so coordinates read back unchanged when none is negative (the raster is padded with
  NullBin cells from 0). Otherwise the smallest coordinate is shifted to 0, since E142 counts
  from the origin cell. ``Orientation`` is the notch angle (down 0, left 90, up 180, right 270)
  and is left out when the mark is unknown. Where two dies share a cell, the last one is written.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.e142.reader import BIN_NAMES_KEY, E142_NAMESPACE, FORMAT_NAME
from waferscope.protocols.wafermap import Side, WaferMap

__all__ = ["build_document", "write_e142"]

_MARK_DEGREES: Final = {Side.DOWN: 0, Side.LEFT: 90, Side.UP: 180, Side.RIGHT: 270}
_HEX_DIGITS: Final = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_HEXADECIMAL_NULL: Final = 0xFF
_INTEGER2_NULL: Final = 0xFFFF


def write_e142(maps: list[WaferMap], stream: BinaryIO) -> None:
    """Write the wafers as one UTF-8 E142 document to a binary stream."""
    tree = ET.ElementTree(build_document(maps))
    ET.indent(tree, space="  ")
    tree.write(stream, encoding="utf-8", xml_declaration=True)
    stream.write(b"\n")


def build_document(maps: list[WaferMap], *, namespace: str = E142_NAMESPACE) -> ET.Element:
    root = ET.Element("MapData", {"xmlns": namespace})
    layouts = ET.SubElement(root, "Layouts")
    substrates = ET.SubElement(root, "Substrates")
    substrate_maps = ET.SubElement(root, "SubstrateMaps")
    seen_ids: set[str] = set()
    for number, wafer in enumerate(maps, start=1):
        substrate_id = wafer.info.wafer_id or str(number)
        if substrate_id in seen_ids:  # (SubstrateType, SubstrateId) is a key of the schema
            substrate_id = f"{substrate_id}#{number}"
        seen_ids.add(substrate_id)
        raster = _Raster.of(wafer)
        codes = _Codes.of(wafer)
        wafer_layout, device_layout = f"Wafer{number}", f"Devices{number}"
        _add_layouts(layouts, wafer, raster, wafer_layout, device_layout)
        substrate = ET.SubElement(
            substrates, "Substrate", {"SubstrateType": "Wafer", "SubstrateId": substrate_id}
        )
        if wafer.info.lot_id:
            ET.SubElement(substrate, "LotId").text = wafer.info.lot_id
        attributes = {
            "SubstrateType": "Wafer",
            "SubstrateId": substrate_id,
            "LayoutSpecifier": f"{wafer_layout}/{device_layout}",
            "SubstrateSide": "TopSide",
            "OriginLocation": raster.origin_location,
            "AxisDirection": raster.axis_direction,
        }
        if wafer.orientation.mark is not None:
            attributes["Orientation"] = str(_MARK_DEGREES[wafer.orientation.mark])
        substrate_map = ET.SubElement(substrate_maps, "SubstrateMap", attributes)
        overlay = ET.SubElement(
            substrate_map, "Overlay", {"MapName": "BinCodeMap", "MapVersion": "1"}
        )
        _add_bin_code_map(overlay, raster, codes)
    return root


@dataclass(frozen=True, slots=True)
class _Raster:
    """Where each die lands in the 2DArray (row 0 = top, column 0 = left)."""

    rows: int
    columns: int
    row: npt.NDArray[np.int64]
    column: npt.NDArray[np.int64]
    origin_location: str
    axis_direction: str

    @classmethod
    def of(cls, wafer: WaferMap) -> _Raster:
        x_right = wafer.orientation.x_increases is Side.RIGHT
        y_down = wafer.orientation.y_increases is Side.DOWN
        columns, column = _axis(wafer.dies.x.astype(np.int64), forward=x_right)
        rows, row = _axis(wafer.dies.y.astype(np.int64), forward=y_down)
        return cls(
            rows=rows,
            columns=columns,
            row=row,
            column=column,
            origin_location=("Upper" if y_down else "Lower") + ("Left" if x_right else "Right"),
            axis_direction=("Down" if y_down else "Up") + ("Right" if x_right else "Left"),
        )


def _axis(values: npt.NDArray[np.int64], *, forward: bool) -> tuple[int, npt.NDArray[np.int64]]:
    """Cells along one axis and each die's cell index (the origin cell is coordinate 0)."""
    if values.size == 0:
        return 0, values
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    base = 0 if 0 <= low <= 4 * span + 64 else low  # pad from 0 unless wasteful or negative
    count = high - base + 1
    offset = values - base
    return count, offset if forward else (count - 1) - offset


@dataclass(frozen=True, slots=True)
class _Codes:
    """The code of every die and one definition per code."""

    die_code: npt.NDArray[np.int64]
    definitions: list[tuple[int, int, bool, str]]  # code, count, passes, description
    bin_type: str
    width: int
    null: int

    @classmethod
    def of(cls, wafer: WaferMap) -> _Codes:
        hard_bin = wafer.dies.hard_bin.astype(np.int64)
        passed = wafer.dies.passed
        names = _bin_names(wafer)
        unique, inverse = np.unique(hard_bin, return_inverse=True)
        n_pass = np.bincount(inverse, weights=passed, minlength=unique.size)
        n_all = np.bincount(inverse, minlength=unique.size)
        consistent = (unique >= 0) & ((n_pass == 0) | (n_pass == n_all))
        die_code = hard_bin.copy()
        definitions: list[tuple[int, int, bool, str]] = []
        for k in np.flatnonzero(consistent):
            code, passes = int(unique[k]), bool(n_pass[k] > 0)
            description = names.get(code, "Pass" if passes else "Fail")
            definitions.append((code, int(n_all[k]), passes, description))
        used = {d[0] for d in definitions}
        next_code = max(used, default=-1) + 1
        odd = ~consistent[inverse]
        if odd.any():
            pairs = np.unique(np.stack([hard_bin[odd], passed[odd].astype(np.int64)]), axis=1)
            for bin_value, passes in pairs.T.tolist():
                code, next_code = next_code, next_code + 1
                mask = odd & (hard_bin == bin_value) & (passed == bool(passes))
                die_code[mask] = code
                origin = "no hard bin" if bin_value < 0 else f"hard bin {bin_value}"
                state = "pass" if passes else "fail"
                definitions.append((code, int(mask.sum()), bool(passes), f"{origin}, {state}"))
        highest = max((d[0] for d in definitions), default=0)
        if highest < _HEXADECIMAL_NULL:
            bin_type, width, null = "HexaDecimal", 2, _HEXADECIMAL_NULL
        elif highest < _INTEGER2_NULL:
            bin_type, width, null = "Integer2", 4, _INTEGER2_NULL
        else:
            raise FormatError(
                f"hard bin {highest} does not fit an E142 Integer2 code (at most 65534)",
                format=FORMAT_NAME,
                source=wafer.provenance.source,
            )
        definitions.sort()
        return cls(die_code, definitions, bin_type, width, null)

    def text(self, code: int) -> str:
        return f"{code:0{self.width}X}"


def _bin_names(wafer: WaferMap) -> dict[int, str]:
    raw = wafer.info.extra.get(BIN_NAMES_KEY)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    names: dict[int, str] = {}
    for key, value in parsed.items():
        try:
            names[int(key)] = str(value)
        except (TypeError, ValueError):
            continue
    return names


def _add_layouts(
    layouts: ET.Element, wafer: WaferMap, raster: _Raster, wafer_layout: str, device_layout: str
) -> None:
    top = ET.SubElement(
        layouts, "Layout", {"LayoutId": wafer_layout, "DefaultUnits": "mm", "TopLevel": "true"}
    )
    ET.SubElement(top, "Dimension", {"X": "1", "Y": "1"})
    children = ET.SubElement(top, "ChildLayouts")
    ET.SubElement(children, "ChildLayout", {"LayoutId": device_layout})
    devices = ET.SubElement(layouts, "Layout", {"LayoutId": device_layout, "DefaultUnits": "mm"})
    ET.SubElement(devices, "Dimension", {"X": str(raster.columns), "Y": str(raster.rows)})
    info = wafer.info
    if info.die_width_um is not None and info.die_height_um is not None:
        size = {"X": repr(info.die_width_um / 1000.0), "Y": repr(info.die_height_um / 1000.0)}
        ET.SubElement(devices, "DeviceSize", size)
    if info.part_type:
        ET.SubElement(devices, "ProductId").text = info.part_type


def _add_bin_code_map(overlay: ET.Element, raster: _Raster, codes: _Codes) -> None:
    bin_code_map = ET.SubElement(
        overlay,
        "BinCodeMap",
        {"BinType": codes.bin_type, "NullBin": codes.text(codes.null), "MapType": "2DArray"},
    )
    definitions = ET.SubElement(bin_code_map, "BinDefinitions")
    for code, count, passes, description in codes.definitions:
        ET.SubElement(
            definitions,
            "BinDefinition",
            {
                "BinCode": codes.text(code),
                "BinCount": str(count),
                "BinQuality": "Pass" if passes else "Fail",
                "BinDescription": description,
                "Pick": "true" if passes else "false",
            },
        )
    grid = np.full((raster.rows, raster.columns), codes.null, dtype=np.int64)
    grid[raster.row, raster.column] = codes.die_code
    shifts = np.arange(codes.width - 1, -1, -1, dtype=np.int64) * 4
    chars = _HEX_DIGITS[(grid[..., None] >> shifts) & 0xF]
    lines = chars.reshape(raster.rows, raster.columns * codes.width)
    for line in lines:
        ET.SubElement(bin_code_map, "BinCode").text = line.tobytes().decode("ascii")
