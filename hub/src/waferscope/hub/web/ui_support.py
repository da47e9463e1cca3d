"""Loading what pictures and explanations need: the stored map and heatmap of a result."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from litestar.exceptions import NotFoundException
from sqlalchemy import select

from waferscope.hub.db.schema import Heatmap, Result, Wafer
from waferscope.hub.mapcodec import decode_heatmap, decode_map
from waferscope.protocols.pb.result_pb2 import CompactWaferMap

if TYPE_CHECKING:
    from waferscope.hub.app import Hub


def map_key(hub: Hub, result_id: str) -> str:
    with hub.db.session() as s:
        key = s.scalar(
            select(Wafer.map_blob)
            .join(Result, Result.wafer_ref == Wafer.id)
            .where(Result.result_id == result_id)
        )
    if not key:
        raise NotFoundException(f"no map for result {result_id}")
    return key


def load_map(hub: Hub, result_id: str) -> CompactWaferMap:
    return decode_map(hub.blobs.get(map_key(hub, result_id)))


def load_heatmap(hub: Hub, result_id: str) -> tuple[str, npt.NDArray[np.uint8]]:
    """(blob key, rows × cols uint8 relevance) of a result's heatmap."""
    with hub.db.session() as s:
        row = s.get(Heatmap, result_id)
        key = row.blob if row is not None else None
    if key is None:
        raise NotFoundException(f"no heatmap for result {result_id}")
    rows, cols, data = decode_heatmap(hub.blobs.get(key))
    return key, np.frombuffer(data, dtype=np.uint8).reshape(rows, cols)
