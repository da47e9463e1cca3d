"""The per-class synthetic budget of a training run: synthetic maps appended to the train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from waferscope.trainer.config import SynthConfig
from waferscope.trainer.data import LabelledData, load_labelled
from waferscope.trainer.synth.registry import SynthError


def budget(train: LabelledData, cfg: SynthConfig) -> dict[str, int]:
    """Synthetic maps wanted per class: ``count`` or ``ratio`` times the real maps of it."""
    real = train.class_counts()
    unknown = sorted((set(cfg.count) | set(cfg.ratio)) - set(train.class_names))
    if unknown:
        raise SynthError(f"synth budget names unknown classes {unknown}")
    out = {name: round(r * real[name]) for name, r in cfg.ratio.items()}
    out.update(cfg.count)
    return {k: v for k, v in out.items() if v > 0}


def synthetic_maps(
    cfg: SynthConfig, class_names: tuple[str, ...], wanted: dict[str, int]
) -> LabelledData:
    """``wanted[class]`` synthetic maps from the configured archive or generator checkpoint."""
    source = cfg.source
    if source is None:
        raise SynthError("synth.source is not set")
    if not Path(source).is_file():
        raise SynthError(f"synth.source {source}: no such file")
    if Path(source).suffix == ".npz":
        data = load_labelled([Path(source)])
        if data.class_names != class_names:
            raise SynthError(
                f"synth.source {source}: classes {list(data.class_names)} differ from the "
                f"training classes {list(class_names)}"
            )
        keep: list[int] = []
        for name, n in wanted.items():
            idx = np.flatnonzero(data.targets == class_names.index(name))
            if idx.size < n:
                raise SynthError(f"synth.source {source}: {idx.size} maps of {name}, {n} wanted")
            keep.extend(int(i) for i in idx[:n])
        return data.subset(np.asarray(keep, np.int64))
    from waferscope.trainer.synth.fit import load_generator, sample

    loaded = load_generator(Path(source))
    if loaded.class_names != class_names:
        raise SynthError(
            f"synth.source {source}: trained on classes {list(loaded.class_names)}, not "
            f"{list(class_names)}"
        )
    drawn = sample(loaded, wanted, seed=cfg.seed)
    return LabelledData(
        drawn.grids,
        drawn.labels,
        class_names,
        False,
        [{"name": Path(source).name, "sha256": _digest(Path(source)), "format": "generator"}],
    )


def _digest(path: Path) -> str:
    import hashlib

    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def add_synthetic(train: LabelledData, cfg: SynthConfig) -> LabelledData:
    """The train split with the synthetic budget appended (val is never touched)."""
    if not cfg.enabled:
        return train
    if train.multi_label:
        raise SynthError("synthetic maps are for single-label training data")
    extra = synthetic_maps(cfg, train.class_names, budget(train, cfg))
    return LabelledData(
        train.grids + extra.grids,
        np.concatenate([train.targets, extra.targets]),
        train.class_names,
        False,
        train.files + extra.files,
        train.skipped,
    )
