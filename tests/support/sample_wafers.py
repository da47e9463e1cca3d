"""Real wafers for tests of any part: WM-811K val maps as WaferMaps or encoded model inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import V1, encode_dense
from waferscope.protocols.formats import read_maps
from waferscope.protocols.wafermap import WaferInfo, WaferMap

PATTERN_COUNT = 9  # the WM-811K classes


def dataset_wafers(val_npz: Path, count: int, start: int = 0) -> Iterator[WaferMap]:
    """``count`` maps of the file from ``start`` on, with lot/wafer/tester ids filled in."""
    for i, wafer in enumerate(read_maps(val_npz)):
        if i < start:
            continue
        if i >= start + count:
            return
        yield wafer.with_(
            info=WaferInfo(
                lot_id=f"LOT{i // 25:04d}", wafer_id=f"{i % 25 + 1:02d}", tester_id="T-01"
            )
        )


def encoded_maps(val_npz: Path, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced real maps of WM-811K val, encoded with encoding v1: (x, labels)."""
    data = load_labelled_arrays(val_npz)
    targets = np.asarray(data.targets)
    rng = np.random.default_rng(seed)
    per_class = max(1, count // PATTERN_COUNT)
    picks = []
    for c in range(PATTERN_COUNT):
        idx = np.flatnonzero(targets == c)
        picks.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    chosen = rng.permutation(np.concatenate(picks))
    x = np.stack([encode_dense(data.maps[i], V1) for i in chosen]).astype(np.float32)
    return x, targets[chosen].astype(np.int64)
