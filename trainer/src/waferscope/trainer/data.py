"""Labelled maps for training: loading, stratified splits, class-balanced sampling, datasets.

Two kinds of input, both through protocols:

* the WM-811K and MixedWM38 ``.npz`` archives, read with
  :func:`waferscope.protocols.datasets.load_labelled_arrays` (arrays, no per-map objects);
* any other wafer-map source that carries labels (hub exports, tester files a reviewer labelled),
  read with :func:`waferscope.protocols.formats.read_maps`; ``WaferMap.labels`` is the ground
  truth and each wafer is normalised (:func:`waferscope.protocols.normalize.normalize`) before it
  becomes a dense grid. Wafers without labels are skipped and counted.

The model input is always the protocols encoding (:func:`waferscope.protocols.encoding.encode_dense`
of the normalised dense grid), applied after augmentation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset, Sampler

from waferscope.protocols.datasets import (
    MIXEDWM38,
    NORMAL_LABEL,
    WM811K,
    load_labelled_arrays,
)
from waferscope.protocols.encoding import EncodingSpec, encode_batch, encode_dense
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.formats import read_maps
from waferscope.protocols.formats.base import Source
from waferscope.protocols.formats.datasets.reader import maps_npy_shape
from waferscope.protocols.normalize import normalize
from waferscope.trainer.augment import augment_grid
from waferscope.trainer.config import AugmentConfig, AugmentPolicy

Grid = npt.NDArray[np.uint8]


class DataError(WaferscopeError):
    """Labelled data could not be loaded or combined."""


@dataclass
class LabelledData:
    """Dense grids with targets: (N,) class indices, or (N, K) multi-hot when multi-label."""

    grids: list[Grid]
    targets: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    multi_label: bool
    files: list[dict[str, str]] = field(default_factory=list)  # name + sha256 per source file
    skipped: int = 0
    # Reviewer root-cause ids per map ("" = none; None = no file carried any): archive key `cause`.
    causes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.grids)

    def subset(self, index: npt.NDArray[np.int64]) -> LabelledData:
        return LabelledData(
            [self.grids[int(i)] for i in index],
            self.targets[index],
            self.class_names,
            self.multi_label,
            list(self.files),
            causes=None if self.causes is None else [self.causes[int(i)] for i in index],
        )

    def keys(self) -> npt.NDArray[np.int64]:
        """One stratum per map: the class, or the label combination when multi-label."""
        return class_keys(self.targets, self.multi_label)

    def class_counts(self) -> dict[str, int]:
        if self.multi_label:
            counts = self.targets.sum(axis=0)
            out = {n: int(c) for n, c in zip(self.class_names, counts, strict=True)}
            out[NORMAL_LABEL] = int((self.targets.sum(axis=1) == 0).sum())
            return out
        bins = np.bincount(self.targets, minlength=len(self.class_names))
        return {n: int(c) for n, c in zip(self.class_names, bins, strict=True)}

    def digest(self) -> str:
        """SHA-256 over the listing of source files (name and content digest)."""
        listing = json.dumps(sorted(self.files, key=lambda f: f["name"]), sort_keys=True)
        return hashlib.sha256(listing.encode()).hexdigest()


def class_keys(targets: npt.NDArray[np.int64], multi_label: bool) -> npt.NDArray[np.int64]:
    if not multi_label:
        return targets.astype(np.int64)
    weights = 1 << np.arange(targets.shape[1], dtype=np.int64)
    keys: npt.NDArray[np.int64] = (targets.astype(np.int64) * weights).sum(axis=1)
    return keys


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _is_dataset_archive(path: Path) -> bool:
    with Source.open(path) as source:
        shape = maps_npy_shape(source.head)
    return shape is not None


def _load_arrays(path: Path) -> LabelledData:
    arrays = load_labelled_arrays(path)
    targets = np.asarray(arrays.targets).astype(np.int64)
    grids = list(arrays.maps)
    with np.load(path) as z:
        causes = [str(c) for c in z["cause"]] if "cause" in z.files else None
    if causes is not None and len(causes) != len(grids):
        raise DataError(f"{path}: 'cause' has {len(causes)} entries for {len(grids)} maps")
    return LabelledData(
        grids,
        targets,
        tuple(arrays.class_names),
        arrays.multi_label,
        [{"name": path.name, "sha256": arrays.sha256, "format": arrays.format}],
        causes=causes,
    )


def _load_wafers(path: Path, class_names: Sequence[str] | None, multi_label: bool) -> LabelledData:
    grids: list[Grid] = []
    labels: list[tuple[str, ...]] = []
    skipped = 0
    for wafer in read_maps(path):
        if not wafer.labels:
            skipped += 1
            continue
        grids.append(np.asarray(normalize(wafer).to_dense("state"), dtype=np.uint8))
        labels.append(tuple(wafer.labels))
    names = tuple(class_names) if class_names else _names_from(labels, multi_label)
    index = {n: i for i, n in enumerate(names)}
    if multi_label:
        targets = np.zeros((len(labels), len(names)), dtype=np.int64)
        for row, labs in enumerate(labels):
            for lab in labs:
                if lab == NORMAL_LABEL and lab not in index:
                    continue
                if lab not in index:
                    raise DataError(f"{path}: label {lab!r} is not one of {list(names)}")
                targets[row, index[lab]] = 1
    else:
        keep, values = [], []
        for row, labs in enumerate(labels):
            if len(labs) != 1 or labs[0] not in index:
                skipped += 1
                continue
            keep.append(row)
            values.append(index[labs[0]])
        grids = [grids[i] for i in keep]
        targets = np.asarray(values, dtype=np.int64)
    files = [{"name": path.name, "sha256": _sha256(path), "format": "wafer-maps"}]
    return LabelledData(grids, targets, names, multi_label, files, skipped)


def _names_from(labels: list[tuple[str, ...]], multi_label: bool) -> tuple[str, ...]:
    found = sorted({lab for labs in labels for lab in labs})
    if multi_label:
        found = [n for n in found if n != NORMAL_LABEL]
    elif NORMAL_LABEL in found:
        found = [n for n in found if n != NORMAL_LABEL] + [NORMAL_LABEL]
    return tuple(found)


def load_labelled(
    paths: Sequence[Path],
    *,
    class_names: Sequence[str] | None = None,
    multi_label: bool | None = None,
) -> LabelledData:
    """Load and concatenate labelled files; class lists must agree (or are taken from the first).

    ``class_names``/``multi_label`` fix the class list for files that are not dataset archives
    (e.g. the classes of a bundle when evaluating it); dataset archives must match them.
    """
    if not paths:
        raise DataError("no labelled input files given")
    parts: list[LabelledData] = []
    names = tuple(class_names) if class_names else None
    multi = multi_label
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file")
        if _is_dataset_archive(Path(path)):
            part = _load_arrays(Path(path))
        else:
            part = _load_wafers(Path(path), names, bool(multi))
        if names is None:
            names = part.class_names
        if multi is None:
            multi = part.multi_label
        if part.class_names != names or part.multi_label != multi:
            raise DataError(
                f"{path}: classes {list(part.class_names)} (multi-label {part.multi_label}) "
                f"differ from {list(names)} (multi-label {multi})"
            )
        parts.append(part)
    if names is None or multi is None:  # pragma: no cover - paths is not empty
        raise DataError("no labelled input files given")
    grids = [g for p in parts for g in p.grids]
    targets = np.concatenate([p.targets for p in parts]) if parts else np.zeros(0, np.int64)
    files = [f for p in parts for f in p.files]
    causes = None
    if any(p.causes is not None for p in parts):
        causes = [c for p in parts for c in (p.causes or [""] * len(p))]
    return LabelledData(
        grids, targets, names, multi, files, sum(p.skipped for p in parts), causes=causes
    )


# --------------------------------------------------------------------------- splits, sampling
def stratified_split(
    keys: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(train, val) indices: ``fraction`` of every stratum goes to val (at least one map of any
    stratum that has two or more), reproducibly for a seed."""
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    val: list[npt.NDArray[np.int64]] = []
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        idx = idx[rng.permutation(idx.size)]
        n_val = round(idx.size * fraction)
        n_val = min(max(n_val, 1), idx.size - 1) if idx.size >= 2 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def limit_per_class(keys: npt.NDArray[np.int64], limit: int, seed: int) -> npt.NDArray[np.int64]:
    """Indices keeping at most ``limit`` maps of every stratum (a random, seeded choice)."""
    rng = np.random.default_rng(seed)
    keep = []
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        if idx.size > limit:
            idx = rng.choice(idx, size=limit, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def sampling_weights(keys: npt.NDArray[np.int64], power: float) -> npt.NDArray[np.float64]:
    """Per-map weights n_c^-power (normalised): 0 keeps frequencies, 1 balances classes."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -power
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


class EpochSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement by weight; reproducible per epoch.

    Under DDP every rank draws the same list and takes every ``world_size``-th index.
    """

    def __init__(
        self,
        weights: npt.NDArray[np.float64],
        num_samples: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.total = num_samples
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        self.num_samples = len(range(rank, num_samples, world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):  # type: ignore[no-untyped-def]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = torch.multinomial(self.weights, self.total, replacement=True, generator=gen)
        return iter(drawn[self.rank :: self.world_size].tolist())


# --------------------------------------------------------------------------- datasets
class WaferDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Encoded (and, for training, augmented) maps with pattern and root-cause targets.

    Augmentation randomness depends only on (seed, epoch, index), so a run gives the same batches
    whatever the number of loader workers. Call :meth:`set_epoch` before each epoch (workers are
    re-created per epoch and pick it up).
    """

    def __init__(
        self,
        data: LabelledData,
        cause_targets: npt.NDArray[np.float32],
        spec: EncodingSpec,
        augment: AugmentConfig | None,
        seed: int,
    ) -> None:
        self.data = data
        self.cause_targets = torch.as_tensor(cause_targets, dtype=torch.float32)
        self.spec = spec
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0
        self._policies = self._policy_table()

    def _policy_table(self) -> list[AugmentPolicy]:
        if self.augment is None:
            return []
        return [self.augment.policy_for(name) for name in self.data.class_names]

    def policy(self, i: int) -> AugmentPolicy | None:
        if self.augment is None:
            return None
        target = self.data.targets[i]
        if not self.data.multi_label:
            return self._policies[int(target)]
        hot = np.flatnonzero(target)
        if hot.size == 0:
            return self.augment.policy_for(NORMAL_LABEL)
        if hot.size == 1:
            return self._policies[int(hot[0])]
        return self.augment.default

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid = self.data.grids[i]
        policy = self.policy(i)
        if policy is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            grid = augment_grid(grid, policy, rng)
        x = torch.from_numpy(encode_dense(grid, self.spec))
        target = self.data.targets[i]
        y = torch.as_tensor(target, dtype=torch.float32 if self.data.multi_label else torch.long)
        return x, y, self.cause_targets[i]


def encode_grids(grids: Sequence[Grid], spec: EncodingSpec) -> npt.NDArray[np.float32]:
    """The encoding of many grids, (N, 3, size, size) float32 (no augmentation)."""
    return encode_batch(grids, spec)


KNOWN_ARCHIVES = (WM811K, MIXEDWM38)


def write_archive(
    path: Path,
    maps: Sequence[np.ndarray],
    targets: np.ndarray,
    class_names: Sequence[str],
    causes: Sequence[str] | None = None,
) -> None:
    """A labelled archive in the trainer's ragged ``.npz`` layout (maps, shapes, offsets);
    ``causes``: reviewer root-cause ids per map ("" = none), stored as ``cause``."""
    offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])]).astype(np.int64)
    arrays: dict[str, np.ndarray] = {
        "maps": np.concatenate([np.asarray(m).ravel() for m in maps]),
        "shapes": np.array([m.shape for m in maps], np.int32),
        "offsets": offsets,
        "label": np.asarray(targets).astype(np.int8),
        "class_names": np.array(list(class_names)),
    }
    if causes is not None:
        arrays["cause"] = np.array([str(c) for c in causes], dtype=str)
    np.savez(path, allow_pickle=False, **arrays)
