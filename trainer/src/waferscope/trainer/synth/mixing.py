"""Mixup and CutMix for encoded wafer maps, respecting the wafer mask, with label smoothing.

Both act on a batch of encodings (channels ``fail_max``, ``fail_mean``, ``wafer``) and pair each
map with another map of the batch:

* **Mixup** blends the fail channels, ``lam * a + (1 - lam) * b``, with the partner's fails kept
  only where the map itself has dies; the wafer channel stays the map's own.
* **CutMix** pastes a box of the partner's fail channels, again only onto the map's own dies.
  ``lam`` becomes the share of the map's wafer area that keeps its own fails (not the box area:
  a box over the blank corners mixes nothing).

Targets become soft: ``lam * onehot(a) + (1 - lam) * onehot(b)``, then label smoothing
``(1 - eps) * t + eps / K``; cause targets mix with the same ``lam``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from waferscope.trainer.config import AugmentConfig

FAIL_CHANNELS = slice(0, 2)
WAFER_CHANNEL = 2


@dataclass(frozen=True)
class MixedBatch:
    x: torch.Tensor
    target: torch.Tensor  # (N, K) soft pattern targets
    cause: torch.Tensor  # (N, C) soft cause targets
    lam: torch.Tensor  # (N,) weight of each map's own label (1 = not mixed)


def _beta(alpha: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) draws, seeded from ``gen`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n)).float()


def box_masks(lam: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """(N, size, size) boolean boxes of area (1 - lam) * size^2 at random centres (clipped)."""
    n = lam.shape[0]
    cut = torch.sqrt(1.0 - lam)
    h = (cut * size).round().long()
    cy = torch.randint(0, size, (n,), generator=gen)
    cx = torch.randint(0, size, (n,), generator=gen)
    y0, y1 = (cy - h // 2).clamp(0, size), (cy + (h + 1) // 2).clamp(0, size)
    x0, x1 = (cx - h // 2).clamp(0, size), (cx + (h + 1) // 2).clamp(0, size)
    r = torch.arange(size)
    rows = (r[None, :] >= y0[:, None]) & (r[None, :] < y1[:, None])
    cols = (r[None, :] >= x0[:, None]) & (r[None, :] < x1[:, None])
    return rows[:, :, None] & cols[:, None, :]


def smooth(target: torch.Tensor, eps: float) -> torch.Tensor:
    return target * (1.0 - eps) + eps / target.shape[1] if eps > 0 else target


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    cause: torch.Tensor,
    n_classes: int,
    cfg: AugmentConfig,
    gen: torch.Generator,
) -> MixedBatch:
    """Mix a batch: each map is mixed with probability ``cfg.mix_prob`` (Mixup or CutMix, by
    the alphas that are set), its partner a random other map of the batch."""
    n, size = x.shape[0], x.shape[-1]
    onehot = torch.nn.functional.one_hot(y, n_classes).float()
    lam = torch.ones(n)
    out = x.clone()
    modes = [m for m, a in (("mixup", cfg.mixup_alpha), ("cutmix", cfg.cutmix_alpha)) if a > 0]
    partner = torch.randperm(n, generator=gen)
    if modes and cfg.mix_prob > 0 and n > 1:
        chosen = torch.rand(n, generator=gen) < cfg.mix_prob
        p_cut = 0.5 if len(modes) == 2 else float(modes == ["cutmix"])
        use_cut = torch.rand(n, generator=gen) < p_cut
        own_wafer = (x[:, WAFER_CHANNEL] > 0).float()
        if "mixup" in modes:
            m = chosen & ~use_cut
            if m.any():
                lm = _beta(cfg.mixup_alpha, int(m.sum()), gen)
                a, b = x[m][:, FAIL_CHANNELS], x[partner[m]][:, FAIL_CHANNELS]
                w = lm[:, None, None, None]
                out[m, FAIL_CHANNELS] = w * a + (1 - w) * b * own_wafer[m][:, None]
                lam[m] = lm
        if "cutmix" in modes:
            m = chosen & use_cut
            if m.any():
                lc = _beta(cfg.cutmix_alpha, int(m.sum()), gen)
                box = box_masks(lc, size, gen).float() * own_wafer[m]
                keep = 1.0 - box
                a, b = x[m][:, FAIL_CHANNELS], x[partner[m]][:, FAIL_CHANNELS]
                out[m, FAIL_CHANNELS] = keep[:, None] * a + box[:, None] * b
                area = own_wafer[m].flatten(1).sum(1).clamp(min=1.0)
                lam[m] = 1.0 - box.flatten(1).sum(1) / area
    w = lam[:, None]
    target = w * onehot + (1 - w) * onehot[partner]
    mixed_cause = w * cause + (1 - w) * cause[partner]
    return MixedBatch(out, smooth(target, cfg.label_smoothing), mixed_cause, lam)


def mixing_enabled(cfg: AugmentConfig) -> bool:
    return cfg.label_smoothing > 0 or (
        cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)
    )
