"""waferscope contracts: data model, formats, encoding, messages and topics shared by every part."""

from waferscope.protocols.errors import FormatError, WaferMapError, WaferscopeError
from waferscope.protocols.wafermap import (
    DieTable,
    Orientation,
    Provenance,
    Side,
    WaferInfo,
    WaferMap,
)

__all__ = [
    "DieTable",
    "FormatError",
    "Orientation",
    "Provenance",
    "Side",
    "WaferInfo",
    "WaferMap",
    "WaferMapError",
    "WaferscopeError",
]
