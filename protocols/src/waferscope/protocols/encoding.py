"""Model-input encoding, versioned so that trainer and edge can never disagree silently.

**Encoding v1** turns one wafer into a float32 tensor of shape ``(3, size, size)`` (``size`` 64
unless a bundle says otherwise), values in [0, 1]:

====  ============  ==========================================================================
ch    name          value of an output pixel over the source cells it covers
====  ============  ==========================================================================
0     ``fail_max``  1 if any covered die failed, else 0 — keeps one-die-wide scratches visible
1     ``fail_mean`` fraction of covered cells that are failing dies — keeps fail *density*
2     ``wafer``     fraction of covered cells that hold a die (the wafer mask)
====  ============  ==========================================================================

Steps: the wafer is normalised (:mod:`waferscope.protocols.normalize`), made dense (0/1/2),
padded with "no die" to a centred square of side ``L = max(rows, cols)``, then resampled to
``size``: when ``L >= size`` every output pixel covers the source cells
``[floor(i*L/size), max(floor(i*L/size)+1, ceil((i+1)*L/size)))`` (area pooling); when
``L < size`` it takes the one cell under its centre ``floor((i+0.5)*L/size)`` (nearest). The
pooling is two small matrix products, so a batch of maps encodes in microseconds per map.

A bundle records :meth:`EncodingSpec.to_dict`; :func:`check_compatible` refuses a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import EncodingError
from waferscope.protocols.normalize import normalize
from waferscope.protocols.wafermap import FAIL_DIE, NO_DIE, WaferMap

CURRENT_VERSION: Final = 1
CHANNELS_V1: Final = ("fail_max", "fail_mean", "wafer")
MIN_SIZE: Final = 16
MAX_SIZE: Final = 512


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    version: int = CURRENT_VERSION
    size: int = 64

    def __post_init__(self) -> None:
        if self.version != CURRENT_VERSION:
            raise EncodingError(
                f"unknown model-input encoding version {self.version} "
                f"(this build knows v{CURRENT_VERSION})"
            )
        if not (MIN_SIZE <= self.size <= MAX_SIZE):
            raise EncodingError(f"encoding size must be {MIN_SIZE}..{MAX_SIZE}, got {self.size}")

    @property
    def channels(self) -> tuple[str, ...]:
        return CHANNELS_V1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(CHANNELS_V1), self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "size": self.size,
            "channels": list(self.channels),
            "dtype": "float32",
            "layout": "NCHW",
            "orientation": "mark down, x right, y down",
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EncodingSpec:
        try:
            spec = cls(version=int(doc["version"]), size=int(doc["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EncodingError(f"malformed encoding description: {exc}") from None
        if list(doc.get("channels", spec.channels)) != list(spec.channels):
            raise EncodingError(
                f"encoding v{spec.version} channels are {list(spec.channels)}, "
                f"the description says {doc.get('channels')}"
            )
        return spec


V1: Final = EncodingSpec()


def check_compatible(expected: EncodingSpec, declared: Mapping[str, Any]) -> None:
    """Raise EncodingError unless ``declared`` (from a bundle manifest) equals ``expected``."""
    got = EncodingSpec.from_dict(declared)
    if got != expected:
        raise EncodingError(
            f"model expects encoding v{got.version} at {got.size}px; "
            f"this pipeline produces v{expected.version} at {expected.size}px"
        )


@lru_cache(maxsize=512)
def _pool_matrix(length: int, size: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(binary cover matrix (size, length), the same normalised per row) for one axis."""
    cover = np.zeros((size, length), dtype=np.float32)
    if length >= size:
        for i in range(size):
            start = (i * length) // size
            end = max(start + 1, -((-(i + 1) * length) // size))
            cover[i, start:end] = 1.0
    else:
        idx = ((np.arange(size) + 0.5) * length / size).astype(np.int64)
        cover[np.arange(size), np.minimum(idx, length - 1)] = 1.0
    mean = cover / cover.sum(axis=1, keepdims=True)
    cover.flags.writeable = False
    mean.flags.writeable = False
    return cover, mean


def encode_dense(grid: npt.ArrayLike, spec: EncodingSpec = V1) -> npt.NDArray[np.float32]:
    """Encode one dense 0/1/2 map (already in canonical orientation) to ``spec.shape``."""
    arr = np.asarray(grid)
    if arr.ndim != 2:
        raise EncodingError(f"a dense map must be 2-D, got shape {arr.shape}")
    out = np.zeros(spec.shape, dtype=np.float32)
    rows, cols = arr.shape
    if rows == 0 or cols == 0:
        return out
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    fail = np.zeros((side, side), dtype=np.float32)
    wafer = np.zeros((side, side), dtype=np.float32)
    fail[top : top + rows, left : left + cols] = arr == FAIL_DIE
    wafer[top : top + rows, left : left + cols] = arr != NO_DIE
    cover, mean = _pool_matrix(side, spec.size)
    out[0] = (cover @ fail @ cover.T) > 0
    out[1] = mean @ fail @ mean.T
    out[2] = mean @ wafer @ mean.T
    np.clip(out, 0.0, 1.0, out=out)
    return out


def encode(wafer: WaferMap, spec: EncodingSpec = V1) -> npt.NDArray[np.float32]:
    """Encode one wafer (normalising its orientation first)."""
    return encode_dense(normalize(wafer).to_dense("state"), spec)


def encode_batch(
    grids: Iterable[npt.ArrayLike], spec: EncodingSpec = V1
) -> npt.NDArray[np.float32]:
    """Encode many dense maps into one ``(N, 3, size, size)`` array."""
    encoded = [encode_dense(g, spec) for g in grids]
    if not encoded:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    return np.stack(encoded)
