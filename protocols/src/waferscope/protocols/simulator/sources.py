"""Where the simulated tester's wafers come from, and which of them it replays.

A source is a WM-811K or MixedWM38 ``.npz`` dataset, any tester file a registered reader
recognises (STDF, TSK, E142, KLARF, CSV, compressed or not), or a folder of such files (searched
recursively; dot-files and dot-folders are left out, and so are files no reader recognises, which
are listed in :attr:`Selection.skipped`). Formats are told by content, as everywhere else.

Datasets stay arrays until a wafer is written (a 37,000-map file costs its arrays, not 37,000
WaferMaps); tester files are read once, whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from waferscope.protocols.datasets import MIXEDWM38, WM811K, LabelledArrays, load_labelled_arrays
from waferscope.protocols.errors import SimulatorError, UnknownFormatError
from waferscope.protocols.formats import Source, detect, read_maps
from waferscope.protocols.wafermap import Orientation, Provenance, WaferInfo, WaferMap

__all__ = ["Selection", "SourceWafer", "load_selection"]

_DATASETS = (WM811K, MIXEDWM38)


@dataclass(frozen=True, slots=True)
class SourceWafer:
    """One wafer taken from a source: the map as read, plus where it came from."""

    wafer: WaferMap
    source: str
    index: int  # the map's index in a dataset, or the wafer's index in its tester file
    labels: tuple[str, ...]  # ground truth when the source carries it (datasets), else ()


class _Pool(Protocol):
    name: str

    def __len__(self) -> int: ...

    def labels(self, i: int) -> tuple[str, ...]: ...

    def wafer(self, i: int) -> SourceWafer: ...


class _DatasetPool:
    """A labelled dataset, kept as arrays; WaferMaps are built one at a time."""

    def __init__(self, data: LabelledArrays) -> None:
        self.data = data
        self.name = data.source

    def __len__(self) -> int:
        return len(self.data)

    def labels(self, i: int) -> tuple[str, ...]:
        return self.data.labels_of(i)

    def wafer(self, i: int) -> SourceWafer:
        grid = self.data.maps[i]
        labels = self.labels(i)
        wafer = WaferMap.from_dense(
            grid,
            provenance=Provenance(
                source=self.name, format=self.data.format, wafer_index=i, record_index=i
            ),
            info=WaferInfo(grid_rows=int(grid.shape[0]), grid_columns=int(grid.shape[1])),
            orientation=Orientation(),
            labels=labels,
        )
        return SourceWafer(wafer, self.name, i, labels)


class _FilePool:
    """The wafers of one tester file, read whole."""

    def __init__(self, name: str, wafers: list[WaferMap]) -> None:
        self.name = name
        self.wafers = wafers

    def __len__(self) -> int:
        return len(self.wafers)

    def labels(self, i: int) -> tuple[str, ...]:
        return self.wafers[i].labels

    def wafer(self, i: int) -> SourceWafer:
        w = self.wafers[i]
        return SourceWafer(w, self.name, w.provenance.wafer_index, w.labels)


@dataclass(frozen=True, slots=True)
class Selection:
    """The wafers to replay, in replay order, as (pool, index) pairs over the loaded sources."""

    pools: tuple[_Pool, ...]
    pool_index: npt.NDArray[np.int64]
    item_index: npt.NDArray[np.int64]
    skipped: tuple[str, ...] = ()  # files in source folders that no reader recognises

    def __len__(self) -> int:
        return int(self.pool_index.shape[0])

    def get(self, k: int) -> SourceWafer:
        return self.pools[int(self.pool_index[k])].wafer(int(self.item_index[k]))

    def order(self, rng: np.random.Generator | None) -> Iterator[int]:
        """One pass over the selection: in order, or shuffled by ``rng``."""
        n = len(self)
        yield from (range(n) if rng is None else (int(k) for k in rng.permutation(n)))


def _folder_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return found


def _open_pool(path: Path, *, in_folder: bool) -> _Pool | None:
    """The wafers of one file; None for a file inside a folder that no reader recognises."""
    try:
        with Source.open(path) as source:
            kind = detect(source).name
    except UnknownFormatError:
        if in_folder:
            return None
        raise SimulatorError(
            "not a wafer map: no reader recognises its content "
            "(a WM-811K/MixedWM38 .npz or a tester file is expected)",
            where=str(path),
        ) from None
    if kind in _DATASETS:
        return _DatasetPool(load_labelled_arrays(path))
    return _FilePool(str(path), list(read_maps(path, format=kind)))


def _load_pools(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[_Pool], list[str]]:
    pools: list[_Pool] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = _folder_files(path)
            if not files:
                raise SimulatorError("the source folder holds no files", where=str(path))
            for file in files:
                pool = _open_pool(file, in_folder=True)
                if pool is None:
                    skipped.append(str(file))
                else:
                    pools.append(pool)
        elif path.exists():
            pool = _open_pool(path, in_folder=False)
            assert pool is not None
            pools.append(pool)
        else:
            raise SimulatorError("no such file or folder", where=str(path))
    return pools, skipped


def _matches(labels: tuple[str, ...], wanted: frozenset[str]) -> bool:
    return any(label.casefold() in wanted for label in labels)


def load_selection(
    paths: Sequence[str | os.PathLike[str]],
    *,
    patterns: Sequence[str] = (),
    limit: int | None = None,
) -> Selection:
    """Load the sources and keep the wafers to replay.

    ``patterns``: keep only wafers with one of these labels (case-insensitive; a MixedWM38 map
    matches when any of its labels does; wafers without labels never match). ``limit``: keep the
    first ``limit`` of them, in source order. Raises :class:`SimulatorError` when there are no
    sources, a path is missing or not a wafer map, or nothing is left to replay.
    """
    if not paths:
        raise SimulatorError("no sources given", where="sources")
    if limit is not None and limit < 1:
        raise SimulatorError(f"must be at least 1, got {limit}", where="limit")
    pools, skipped = _load_pools(paths)
    wanted = frozenset(p.casefold() for p in patterns)
    pool_ids: list[npt.NDArray[np.int64]] = []
    items: list[npt.NDArray[np.int64]] = []
    for p, pool in enumerate(pools):
        keep = np.arange(len(pool), dtype=np.int64)
        if wanted:
            keep = keep[[_matches(pool.labels(int(i)), wanted) for i in keep]]
        pool_ids.append(np.full(keep.shape[0], p, dtype=np.int64))
        items.append(keep)
    pool_index = np.concatenate(pool_ids) if pool_ids else np.zeros(0, np.int64)
    item_index = np.concatenate(items) if items else np.zeros(0, np.int64)
    if limit is not None:
        pool_index, item_index = pool_index[:limit], item_index[:limit]
    if pool_index.shape[0] == 0:
        where = ", ".join(str(p) for p in paths)
        if not wanted or not pools:
            raise SimulatorError("the sources hold no wafer maps", where=where)
        present = sorted(
            {label for pool in pools for i in range(len(pool)) for label in pool.labels(i)}
        )
        raise SimulatorError(
            f"no wafer carries the pattern {' or '.join(repr(p) for p in patterns)} "
            f"(labels present: {', '.join(present) or 'none'})",
            where=where,
        )
    return Selection(tuple(pools), pool_index, item_index, tuple(skipped))
