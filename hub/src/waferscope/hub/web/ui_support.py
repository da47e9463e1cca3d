"""Loading what pictures and explanations need: the stored map and heatmap of a result.

A blob that is gone from the store is a 404, one that cannot be decoded a 409 (the stored data
conflicts with what the page needs); both name the result and the blob key, and each failed
request logs one warning line (no traceback: the cause is the data, not the code).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from litestar.exceptions import HTTPException, NotFoundException
from sqlalchemy import select

from waferscope.hub.blobs import BlobNotFoundError
from waferscope.hub.db.schema import Heatmap, Result, Wafer
from waferscope.hub.mapcodec import MapCodecError, check_map, decode_heatmap, decode_map
from waferscope.protocols.messages import MessageError
from waferscope.protocols.pb.result_pb2 import CompactWaferMap

if TYPE_CHECKING:
    from waferscope.hub.app import Hub

log = logging.getLogger("waferscope.hub.web")


class CorruptBlobError(HTTPException):
    """A stored map or heatmap blob is there but cannot be decoded."""

    status_code = 409


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


def _read(hub: Hub, key: str, what: str, result_id: str) -> bytes:
    try:
        return hub.blobs.get(key)
    except BlobNotFoundError:
        detail = f"the {what} blob {key} of result {result_id} is missing from the blob store"
        log.warning("%s", detail)
        raise NotFoundException(detail) from None


def _corrupt(key: str, what: str, result_id: str, reason: object) -> str:
    """The detail of a CorruptBlobError, logged."""
    detail = f"the {what} blob {key} of result {result_id} is corrupt: {reason}"
    log.warning("%s", detail)
    return detail


def load_map(hub: Hub, result_id: str) -> CompactWaferMap:
    """The stored map, checked so that drawing it cannot fail (404 / 409 otherwise)."""
    key = map_key(hub, result_id)
    blob = _read(hub, key, "map", result_id)
    try:
        compact = decode_map(blob)
        check_map(compact)
    except (MapCodecError, MessageError) as exc:
        raise CorruptBlobError(detail=_corrupt(key, "map", result_id, exc)) from None
    if compact.rows == 0 or compact.cols == 0:
        raise CorruptBlobError(detail=_corrupt(key, "map", result_id, "the map has no dies"))
    return compact


def load_heatmap(hub: Hub, result_id: str) -> tuple[str, npt.NDArray[np.uint8]]:
    """(blob key, rows × cols uint8 relevance) of a result's heatmap (404 / 409 when unusable)."""
    with hub.db.session() as s:
        row = s.get(Heatmap, result_id)
        key = row.blob if row is not None else None
    if key is None:
        raise NotFoundException(f"no heatmap for result {result_id}")
    blob = _read(hub, key, "heatmap", result_id)
    try:
        rows, cols, data = decode_heatmap(blob)
    except MapCodecError as exc:
        raise CorruptBlobError(detail=_corrupt(key, "heatmap", result_id, exc)) from None
    if rows == 0 or cols == 0:
        raise CorruptBlobError(detail=_corrupt(key, "heatmap", result_id, "the heatmap is empty"))
    return key, np.frombuffer(data, dtype=np.uint8).reshape(rows, cols)
