"""Training and sampling of the registered generators on real maps, with resumable checkpoints.

Real maps are resized (nearest die) to the generator's square size and split into a die channel
and a fail channel; the fail density (fails / dies) of each map is its second condition. A
checkpoint holds the plugin name, its settings, the dataset's class list, the classes trained on,
the real per-class densities (sampled from when no density is requested), the model and optimiser
states, the step count and the loss history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from waferscope.trainer.data import load_labelled
from waferscope.trainer.synth.plausibility import (
    PlausibilityConfig,
    PlausibilityReport,
    check,
    project,
)
from waferscope.trainer.synth.registry import SynthError, SynthModel, get_generator, make_config

Grid = npt.NDArray[np.uint8]
Progress = Callable[[int, dict[str, float]], None]


def resize_nearest(grid: npt.ArrayLike, size: int) -> Grid:
    """A grid resized to size x size by nearest die (values kept exactly)."""
    g = np.asarray(grid, dtype=np.uint8)
    rows = ((np.arange(size) + 0.5) * g.shape[0] / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * g.shape[1] / size).astype(np.int64)
    out: Grid = g[rows][:, cols]
    return out


def to_channels(grids: Sequence[Grid]) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (N, 2, S, S) float32 die/fail in {0, 1}, fail density (N,) = fails / dies)."""
    stack = np.stack([np.asarray(g) for g in grids])
    die = stack > 0
    fail = stack == 2
    maps = torch.from_numpy(np.stack([die, fail], axis=1).astype(np.float32))
    density = fail.reshape(len(stack), -1).sum(1) / np.maximum(
        die.reshape(len(stack), -1).sum(1), 1
    )
    return maps, torch.from_numpy(density.astype(np.float32))


@dataclass
class RealMaps:
    """Real maps of the chosen classes at the generator size."""

    grids: list[Grid]
    labels: npt.NDArray[np.int64]  # indices into class_names
    class_names: tuple[str, ...]
    classes: tuple[str, ...]  # the chosen subset


def load_real(
    paths: Sequence[Path],
    classes: Sequence[str],
    size: int,
    limit: int | None = None,
    seed: int = 0,
) -> RealMaps:
    """Maps of ``classes`` from labelled files, resized; at most ``limit`` per class."""
    data = load_labelled(list(paths))
    if data.multi_label:
        raise SynthError("synthetic maps are generated for single-label data (WM-811K)")
    unknown = [c for c in classes if c not in data.class_names]
    if unknown:
        raise SynthError(f"classes {unknown} are not in {list(data.class_names)}")
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for name in classes:
        idx = np.flatnonzero(data.targets == data.class_names.index(name))
        if idx.size == 0:
            raise SynthError(f"no maps of class {name!r} in {[str(p) for p in paths]}")
        if limit is not None and idx.size > limit:
            idx = np.sort(rng.choice(idx, size=limit, replace=False))
        keep.extend(int(i) for i in idx)
    grids = [resize_nearest(data.grids[i], size) for i in keep]
    return RealMaps(grids, data.targets[keep], data.class_names, tuple(classes))


@dataclass
class FitResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_generator(
    generator: str,
    real: RealMaps,
    out: Path,
    *,
    steps: int,
    settings: dict[str, Any] | None = None,
    max_minutes: float | None = None,
    seed: int = 0,
    checkpoint_every: int = 200,
    resume: bool = True,
    progress: Progress | None = None,
) -> FitResult:
    """Train ``generator`` for ``steps`` optimisation steps (or ``max_minutes``), resumably."""
    plugin = get_generator(generator)
    cfg = make_config(generator, settings or {})
    torch.manual_seed(seed)
    model = plugin.build(cfg, len(real.class_names))
    maps, density = to_channels(real.grids)
    labels = torch.from_numpy(real.labels)
    step, seconds, history = 0, 0.0, []
    if resume and out.is_file():
        ckpt = _read(out)
        if ckpt["generator"] != generator:
            raise SynthError(f"{out}: holds a {ckpt['generator']} generator, not {generator}")
        model.load_state_dict(ckpt["state"])
        step, seconds, history = ckpt["step"], ckpt["seconds"], ckpt["history"]
    densities = {
        name: density[labels == real.class_names.index(name)].tolist() for name in real.classes
    }
    rng = torch.Generator().manual_seed(seed * 7919 + step)
    start = time.monotonic()

    def save() -> None:
        _write(
            out,
            generator,
            cfg.model_dump(),
            real,
            densities,
            model,
            step,
            seconds + time.monotonic() - start,
            history,
        )

    while step < steps:
        if max_minutes is not None and (time.monotonic() - start) / 60.0 >= max_minutes:
            break
        batch = torch.randint(0, len(labels), (cfg.batch_size,), generator=rng)
        losses = model.fit_step(maps[batch], labels[batch], density[batch])
        step += 1
        if step % 10 == 0 or step == steps:
            history.append({"step": step, **losses})
        if progress is not None:
            progress(step, losses)
        if step % checkpoint_every == 0:
            save()
    save()
    return FitResult(out, step, seconds + time.monotonic() - start, history)


def _write(
    out: Path,
    generator: str,
    settings: dict[str, Any],
    real: RealMaps,
    densities: dict[str, list[float]],
    model: SynthModel,
    step: int,
    seconds: float,
    history: list[dict[str, float]],
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": generator,
        "settings": settings,
        "class_names": list(real.class_names),
        "classes": list(real.classes),
        "densities": densities,
        "state": model.state_dict(),
        "step": step,
        "seconds": seconds,
        "history": history,
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(doc, tmp)
    tmp.replace(out)
    out.with_suffix(".json").write_text(
        json.dumps(
            {k: doc[k] for k in ("generator", "settings", "classes", "step", "seconds")}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SynthError(f"{path}: no such generator checkpoint")
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SynthError(f"{path}: not a generator checkpoint: {exc}") from None
    missing = {"generator", "settings", "class_names", "classes", "densities", "state"} - set(ckpt)
    if missing:
        raise SynthError(f"{path}: not a generator checkpoint (missing {sorted(missing)})")
    return ckpt


@dataclass
class LoadedGenerator:
    name: str
    model: SynthModel
    class_names: tuple[str, ...]
    classes: tuple[str, ...]
    densities: dict[str, list[float]]
    step: int
    seconds: float

    @property
    def size(self) -> int:
        return self.model.cfg.size


def load_generator(path: Path) -> LoadedGenerator:
    """A trained generator from its checkpoint, ready to sample."""
    ckpt = _read(path)
    plugin = get_generator(ckpt["generator"])
    cfg = make_config(ckpt["generator"], ckpt["settings"])
    model = plugin.build(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["state"])
    return LoadedGenerator(
        ckpt["generator"],
        model,
        tuple(ckpt["class_names"]),
        tuple(ckpt["classes"]),
        ckpt["densities"],
        int(ckpt.get("step", 0)),
        float(ckpt.get("seconds", 0.0)),
    )


@dataclass
class Samples:
    grids: list[Grid]
    labels: npt.NDArray[np.int64]
    report: PlausibilityReport


def sample(
    loaded: LoadedGenerator,
    counts: dict[str, int],
    *,
    seed: int = 0,
    plausibility: PlausibilityConfig | None = None,
    batch: int = 256,
    max_rounds: int = 20,
    progress: Callable[[int], None] | None = None,
) -> Samples:
    """``counts[class]`` plausible maps per class; implausible draws are rejected and redrawn.

    The density condition of each draw is a real map's density of that class. Raises
    :class:`SynthError` when a class is not one the generator was trained on, or when
    ``max_rounds`` rounds of drawing do not give enough plausible maps.
    """
    pcfg = plausibility or PlausibilityConfig.model_validate({})
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    grids: list[Grid] = []
    labels: list[int] = []
    report = PlausibilityReport()
    for name, want in counts.items():
        if name not in loaded.classes:
            raise SynthError(f"class {name!r}: the generator knows only {list(loaded.classes)}")
        index = loaded.class_names.index(name)
        got, rounds = 0, 0
        while got < want:
            if rounds >= max_rounds:
                raise SynthError(
                    f"class {name!r}: only {got} of {want} plausible maps after {rounds} rounds "
                    f"(rejection rate {report.rejection_rate:.2f})"
                )
            rounds += 1
            n = min(batch, max(2 * (want - got), 8))
            dens = rng.choice(np.asarray(loaded.densities[name], np.float32), size=n)
            lab = torch.full((n,), index, dtype=torch.long)
            probs = loaded.model.generate(lab, torch.from_numpy(dens), gen).numpy()
            defect = np.full(n, name != "none")
            ok, part = check(probs, defect, pcfg, dens)
            report.add(part)
            kept = project(probs[ok][: want - got], pcfg, dens[ok][: want - got])
            grids.extend(kept)
            labels.extend([index] * len(kept))
            got += len(kept)
            if progress is not None:
                progress(len(kept))
    return Samples(grids, np.asarray(labels, np.int64), report)
