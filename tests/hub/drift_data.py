"""Drift test streams from real WM-811K maps: a steady device and one whose classes move."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from hub_data import T0, make_result, real_grids

WINDOW = 150
DRIFT = {
    "reference_size": WINDOW,
    "current_size": WINDOW,
    "min_results": 50,
    "permutations": 399,
    "max_samples": 120,
    "alpha": 0.01,
}


def stream(data_dir: Path, device: str, *, drifting: bool, offset: int) -> list:
    """2·WINDOW results: a reference of the natural class mix, then the same mix (steady) or
    only edge-ring and center maps (drifting: the predicted classes and embeddings move)."""
    pool = real_grids(data_dir, 6 * WINDOW, start=offset)
    grids = [pool[i] for i in np.random.default_rng(offset).permutation(len(pool))]
    ref = grids[:WINDOW]
    rest = grids[WINDOW:]
    cur = [g for g in rest if g[1] in ("Edge-Ring", "Center")] if drifting else rest
    out = []
    for k, (grid, label) in enumerate(ref + cur[:WINDOW]):
        when = T0 + timedelta(seconds=20 * k)
        out.append(
            make_result(grid, label, k, device_id=device, pattern=label, when=when, tester=device)
        )
    return out
