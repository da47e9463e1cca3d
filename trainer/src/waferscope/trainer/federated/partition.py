"""Non-IID partitions of a labelled archive: one ``.npz`` per simulated node, each with a skewed
class mix (for tests, benchmarks and rehearsals of a federation before real edges join).

Each node gets ``major`` maps of each of its own classes and ``minor`` maps of every other class;
the classes are dealt round-robin, so together the nodes cover every class. The archives keep
the full class list, so every node trains the same output layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.trainer.data import DataError, write_archive


def skewed_partitions(
    source: Path,
    out_dir: Path,
    nodes: int,
    *,
    major: int,
    minor: int,
    seed: int = 0,
) -> list[Path]:
    """Write ``node-<i>.npz`` for i in range(nodes); maps are drawn without overlap."""
    arrays = load_labelled_arrays(source)
    if arrays.multi_label:
        raise DataError(f"{source}: skewed partitions need a single-label archive")
    targets = np.asarray(arrays.targets).astype(np.int64)
    names = list(arrays.class_names)
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(targets == c))) for c in range(len(names))}
    owner = {c: c % nodes for c in range(len(names))}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for node in range(nodes):
        index: list[int] = []
        for c, pool in pools.items():
            want = major if owner[c] == node else minor
            if len(pool) < want:
                raise DataError(f"{source}: class {names[c]!r} has too few maps for {nodes} nodes")
            index += [int(i) for i in pool[:want]]
            del pool[:want]
        path = out_dir / f"node-{node}.npz"
        write_archive(path, [arrays.maps[i] for i in index], targets[index], names)
        paths.append(path)
    return paths
