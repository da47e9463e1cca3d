"""SEMI E142 substrate maps (E142-1 XML schema): reader (writer in :mod:`.writer`).

Structure followed (SEMI E142 "Specification for Substrate Mapping" and its XML schema E142.1;
element and attribute names as in the public schema, namespace
``urn:semi-org:xsd.E142-1.V1005.SubstrateMap`` and its other versions)::

    MapData
      Layouts/Layout[@LayoutId @DefaultUnits @TopLevel]  Dimension[@X @Y], DeviceSize[@X @Y],
                                                         ChildLayouts/ChildLayout[@LayoutId]
      Substrates/Substrate[@SubstrateType @SubstrateId]   LotId, ProductId, ...
      SubstrateMaps/SubstrateMap[@SubstrateType @SubstrateId @LayoutSpecifier @SubstrateSide
                                 @Orientation @OriginLocation @AxisDirection]
        Overlay[@MapName]
          ReferenceDevices/ReferenceDevice[@Name]/Coordinates[@X @Y]
          BinCodeMap[@BinType @NullBin @MapType]
            BinDefinitions/BinDefinition[@BinCode @BinCount @BinQuality @BinDescription @Pick]
            BinCode (one element per row of the map)

Elements are matched by local name, so any namespace version (or none) is accepted. Every
``SubstrateMap`` whose overlay holds a ``BinCodeMap`` is one wafer, in document order.

**Bin codes.** ``BinType`` fixes how a code is written: ``ASCII`` one character, ``HexaDecimal``
two hex digits (one byte), ``Integer2`` four hex digits (two bytes), ``Decimal`` decimal digits
(as wide as ``NullBin``, else three). ``hard_bin`` is the code's value: the hex or decimal number,
and for ``ASCII`` the character's code point (``"1"`` = 49, ``"A"`` = 65), which keeps distinct
characters distinct. A numeric row whose codes are separated by blanks is split on the blanks.
Cells equal to ``NullBin`` hold no die.

**Pass/fail.** A code passes when its ``BinDefinition`` has ``BinQuality`` Pass (or Good / OK),
or, without a quality, ``Pick="true"``. When the map defines bins, a code it does not define is
an error naming the row's line. When it defines none, code value 1 (ASCII ``"1"``) passes and the
wafer says so in a note.

**Coordinates.** With ``MapType`` 2DArray (the default) the first ``BinCode`` is the top row of
the map picture and the first code of a row its left column. ``OriginLocation`` (UpperLeft,
UpperRight, LowerLeft, LowerRight, Center; default LowerLeft) names the cell that is (0, 0) and
``AxisDirection`` (UpRight, DownRight, UpLeft, DownLeft; default UpRight) the directions in which y
and x grow; LowerLeft/UpRight makes the bottom-left cell (0, 0) with y growing upward. Center puts
the origin at cell (columns // 2, rows // 2). ``BinCode`` elements carrying ``X`` and ``Y``
attributes (a coordinate map) give each die's coordinates directly. ``Orientation`` is the angle
of the notch, clockwise from the bottom of the picture: 0 down, 90 left, 180 up, 270 right. A
``SubstrateSide`` of BottomSide means the picture is seen from the back, so left and right (mark
and x axis) are mirrored into the front view that :class:`Orientation` describes. Reference
devices are kept in ``info.extra`` and do not move the coordinates.

**Hostile input.** The size cap ``ReadOptions.max_text_bytes`` applies first; then the XML is
parsed with ``defusedxml`` (no DTD, entity or external reference is accepted, so no entity
expansion and no file or network access); element count and dies are capped. Every problem is a
:class:`FormatError` naming the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import BinaryIO, ClassVar, Final

import numpy as np

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.e142._bins import (
    MIRROR,
    Fail,
    array_cells,
    bin_spec,
    coordinate_cells,
    parse_axes,
    parse_mark,
)
from waferscope.protocols.formats.e142._xml import Node, build_tree
from waferscope.protocols.wafermap import (
    DieTable,
    MarkKind,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

__all__ = ["BIN_NAMES_KEY", "E142_NAMESPACE", "FORMAT_NAME", "E142Format"]

E142_NAMESPACE: Final = "urn:semi-org:xsd.E142-1.V1005.SubstrateMap"
BIN_NAMES_KEY: Final = "bin_names"  # info.extra: JSON {"<hard bin>": "<description>"}
FORMAT_NAME: Final = "e142"

_SNIFF_MARKERS: Final = (b"<MapData", b":MapData", b"E142", b"<SubstrateMaps", b"<SubstrateMap ")
_TEXT_ELEMENTS: Final = frozenset({"BinCode", "LotId", "ProductId"})
_UNIT_UM: Final = {
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), 1000.0),
    **dict.fromkeys(("um", "µm", "micron", "microns", "micrometer", "micrometers"), 1.0),
    **dict.fromkeys(("micrometre", "micrometres"), 1.0),
    "nm": 0.001,
    "cm": 10_000.0,
    **dict.fromkeys(("mil", "mils"), 25.4),
    **dict.fromkeys(("in", "inch", "inches"), 25_400.0),
}


# ---------------------------------------------------------------------- the format
class E142Format:
    """SEMI E142 XML substrate maps (BinCodeMap overlays), read and written."""

    name: ClassVar[str] = FORMAT_NAME
    title: ClassVar[str] = "SEMI E142 substrate map XML (BinCodeMap)"

    def sniff(self, head: bytes) -> bool:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            head = head[: len(head) // 2 * 2].decode("utf-16", "ignore").encode("utf-8")
        head = head.removeprefix(b"\xef\xbb\xbf")
        if not head.lstrip().startswith(b"<"):
            return False
        return any(marker in head for marker in _SNIFF_MARKERS)

    def write(self, maps: list[WaferMap], stream: BinaryIO) -> None:
        """Write the wafers as one E142 ``MapData`` document (see :mod:`.writer`)."""
        from waferscope.protocols.formats.e142.writer import write_e142

        write_e142(maps, stream)

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        data = source.read_all(options.max_text_bytes)
        max_elements = min(options.max_dies, 5_000_000) + 10_000  # rows, or dies of a coord map
        root = build_tree(
            data,
            source=source.name,
            format_name=FORMAT_NAME,
            truncated=source.truncated,
            max_elements=max_elements,
            keep_text=_TEXT_ELEMENTS,
        )
        map_data = root if root.name == "MapData" else root.first_descendant("MapData")
        if map_data is None:
            raise FormatError(
                f"root element <{root.name}> is not an E142 <MapData>",
                format=FORMAT_NAME,
                source=source.name,
                line=root.line,
            )
        layouts = {
            n.attrib.get("LayoutId", ""): n for n in map_data.grandchildren("Layouts", "Layout")
        }
        substrates = {
            (n.attrib.get("SubstrateType", ""), n.attrib.get("SubstrateId", "")): n
            for n in map_data.grandchildren("Substrates", "Substrate")
        }

        def fail(reason: str, line: int) -> FormatError:
            return FormatError(reason, format=FORMAT_NAME, source=source.name, line=line)

        dies_left = options.max_dies
        index = 0
        for smap in map_data.grandchildren("SubstrateMaps", "SubstrateMap"):
            overlay = next(
                (o for o in smap.children_named("Overlay") if o.child("BinCodeMap") is not None),
                None,
            )
            if overlay is None:
                continue
            wafer = _read_wafer(
                smap, overlay, layouts, substrates, source.name, index, dies_left, fail
            )
            dies_left -= wafer.die_count
            index += 1
            yield wafer
        if index == 0:
            raise fail("no SubstrateMap with a BinCodeMap overlay", map_data.line)


def _read_wafer(
    smap: Node,
    overlay: Node,
    layouts: dict[str, Node],
    substrates: dict[tuple[str, str], Node],
    source: str,
    index: int,
    dies_left: int,
    fail: Fail,
) -> WaferMap:
    bcm = overlay.child("BinCodeMap")
    assert bcm is not None
    spec = bin_spec(bcm, fail)
    notes = list(spec.notes)
    axes = parse_axes(smap.attrib, smap.line, fail)
    mark, mark_note = parse_mark(smap.attrib, smap.line, fail)
    if mark_note:
        notes.append(mark_note)
    parts = [p for p in re.split(r"[/\\]", smap.attrib.get("LayoutSpecifier", "")) if p.strip()]
    layout = layouts.get(parts[-1].strip()) if parts else None
    declared = _declared_grid(layout, fail)

    rows = bcm.children_named("BinCode")
    coordinate_map = any("X" in r.attrib or "Y" in r.attrib for r in rows)
    if coordinate_map:
        cells = coordinate_cells(rows, spec, fail)
        grid = None
    else:
        cells = array_cells(rows, spec, axes, declared, bcm, fail)
        grid = (cells.columns, len(rows))
    values, xs, ys = cells.values, cells.x, cells.y
    if values.size > dies_left:
        raise fail(f"more than {dies_left:,} dies (ReadOptions.max_dies)", bcm.line)

    if spec.passes:
        undefined = np.flatnonzero(~np.isin(values, np.fromiter(spec.passes, np.int64)))
        if undefined.size:
            k = int(undefined[0])
            row = rows[int(cells.row[k])]
            where = "" if coordinate_map else f" at column {int(cells.column[k]) + 1}"
            raise fail(
                f"bin code {spec.code_text(int(values[k]))!r}{where} is not defined in "
                "BinDefinitions",
                row.line,
            )
        pass_codes = np.fromiter((v for v, ok in spec.passes.items() if ok), np.int64)
    else:
        pass_codes = np.array([49 if spec.bin_type == "ASCII" else 1], dtype=np.int64)
        notes.append("no BinDefinitions; bin code 1 taken as the only passing bin")
    passed = np.isin(values, pass_codes)
    if spec.counts:
        found = dict(zip(*(a.tolist() for a in np.unique(values, return_counts=True)), strict=True))
        for value, count in sorted(spec.counts.items()):
            if found.get(value, 0) != count:
                notes.append(
                    f"BinCount of bin code {spec.code_text(value)!r} is {count}, "
                    f"the map holds {found.get(value, 0)}"
                )

    side = smap.attrib.get("SubstrateSide", "").strip().lower()
    mirrored = side.startswith("bottom")
    x_side = Side.RIGHT if axes.x_right else Side.LEFT
    if mirrored:
        notes.append("map seen from the bottom side; left and right mirrored to the front view")
        x_side = MIRROR[x_side]
        mark = None if mark is None else MIRROR[mark]
    orientation = Orientation(
        mark=mark,
        mark_kind=None if mark is None else MarkKind.NOTCH,
        x_increases=x_side,
        y_increases=Side.DOWN if axes.y_down else Side.UP,
    )
    substrate_type = smap.attrib.get("SubstrateType", "")
    substrate_id = smap.attrib.get("SubstrateId", "")
    substrate = substrates.get((substrate_type, substrate_id))
    extra = {"substrate_type": substrate_type, "bin_type": spec.bin_type}
    if spec.null_text is not None:
        extra["null_bin"] = spec.null_text
    if overlay.attrib.get("MapName"):
        extra["map_name"] = overlay.attrib["MapName"]
    if spec.names:
        extra[BIN_NAMES_KEY] = json.dumps({str(k): v for k, v in sorted(spec.names.items())})
    references = {
        ref.attrib.get("Name", f"#{i}"): f"{coords.attrib.get('X')},{coords.attrib.get('Y')}"
        for i, ref in enumerate(overlay.grandchildren("ReferenceDevices", "ReferenceDevice"))
        if (coords := ref.child("Coordinates")) is not None
    }
    if references:
        extra["reference_devices"] = json.dumps(references, sort_keys=True)
    width_um, height_um = _device_size_um(layout, notes)
    part_type = _text_of(substrate, "ProductId") or _text_of(layout, "ProductId")
    columns, row_count = grid if grid is not None else (declared or (None, None))
    info = WaferInfo(
        lot_id=_text_of(substrate, "LotId"),
        wafer_id=substrate_id or None,
        part_type=part_type,
        die_width_um=width_um,
        die_height_um=height_um,
        grid_columns=columns or None,
        grid_rows=row_count or None,
        extra=extra,
    )
    return WaferMap(
        dies=DieTable.build(x=xs, y=ys, passed=passed, hard_bin=values),
        provenance=Provenance(
            source=source, format=FORMAT_NAME, wafer_index=index, record_index=index, line=smap.line
        ),
        info=info,
        orientation=orientation,
        notes=tuple(notes),
    )


def _declared_grid(layout: Node | None, fail: Fail) -> tuple[int, int] | None:
    """Columns and rows from the covered layout's Dimension, when it declares them."""
    dimension = None if layout is None else layout.child("Dimension")
    if dimension is None:
        return None
    try:
        columns = int(dimension.attrib["X"])
        rows = int(dimension.attrib["Y"])
    except (KeyError, ValueError):
        raise fail("<Dimension> needs integer X and Y attributes", dimension.line) from None
    if columns < 0 or rows < 0:
        raise fail("<Dimension> X and Y must not be negative", dimension.line)
    return columns, rows


def _text_of(node: Node | None, name: str) -> str | None:
    child = None if node is None else node.child(name)
    text = "" if child is None else child.text.strip()
    return text or None


def _device_size_um(layout: Node | None, notes: list[str]) -> tuple[float | None, float | None]:
    size = None if layout is None else layout.child("DeviceSize")
    if layout is None or size is None:
        return None, None
    units = (size.attrib.get("Units") or layout.attrib.get("DefaultUnits") or "").strip()
    factor = _UNIT_UM.get(units.lower())
    if factor is None:
        notes.append(f"DeviceSize units {units!r} unknown; die size left out")
        return None, None
    try:
        width = round(float(size.attrib.get("X", "")) * factor, 6)
        height = round(float(size.attrib.get("Y", "")) * factor, 6)
    except ValueError:
        notes.append("DeviceSize is not numeric; die size left out")
        return None, None
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        notes.append("DeviceSize is not positive; die size left out")
        return None, None
    return width, height
