"""Losses: focal loss for the imbalanced pattern head, soft cross-entropy for the root-cause head,
and a consistency term tying the two heads together through the taxonomy prior.

total = pattern_weight * focal(pattern) + cause_weight * CE(cause, target)
        + consistency_weight * KL(softmax(pattern) @ prior || softmax(cause))

The root-cause target is the prior row of the map's pattern (:mod:`.taxonomy`) until reviewed
cause labels exist. The consistency term asks the cause head to agree with what the *predicted*
pattern implies, so the two heads cannot drift apart on maps the pattern head is unsure about.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as nnf

_EPS = 1e-7


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-class focal loss (Lin et al. 2017): mean of -alpha_t (1 - p_t)^gamma log p_t.

    ``target`` is (N,) class indices, or (N, K) soft targets (Mixup/CutMix, label smoothing):
    then the loss is the target-weighted sum of the per-class terms (equal for one-hot rows).
    """
    logp = nnf.log_softmax(logits.float(), dim=1)
    if target.dim() == 2:
        terms = -((1.0 - logp.exp()).clamp(min=0.0) ** gamma) * logp
        soft = (target * terms).sum(dim=1)
        if alpha is not None:
            soft = soft * (target @ alpha)
        return soft.mean()
    logp_t = logp.gather(1, target[:, None]).squeeze(1)
    p_t = logp_t.exp()
    loss = -((1.0 - p_t).clamp(min=0.0) ** gamma) * logp_t
    if alpha is not None:
        loss = loss * alpha[target]
    return loss.mean()


def binary_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-output sigmoid focal loss for multi-label targets (0/1 floats)."""
    logits = logits.float()
    bce = nnf.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ((1.0 - p_t) ** gamma) * bce
    if alpha is not None:
        loss = loss * alpha[None, :]
    return loss.mean()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * nnf.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def pattern_to_cause(
    pattern_logits: torch.Tensor, prior: torch.Tensor, multi_label: bool, normal: torch.Tensor
) -> torch.Tensor:
    """Cause distribution implied by the predicted pattern: softmax(p) @ prior, or for
    multi-label the mean of present rows weighted by the sigmoid outputs (normal row for none)."""
    if not multi_label:
        return nnf.softmax(pattern_logits.float(), dim=1) @ prior
    probs = torch.sigmoid(pattern_logits.float())
    mass = probs.sum(dim=1, keepdim=True)
    mixed = (probs @ prior) / mass.clamp(min=_EPS)
    p_none = torch.prod(1.0 - probs, dim=1, keepdim=True)
    return (1.0 - p_none) * mixed + p_none * normal[None, :]


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    pattern: torch.Tensor
    cause: torch.Tensor
    consistency: torch.Tensor


class MultiTaskLoss(nn.Module):
    def __init__(
        self,
        prior: torch.Tensor,
        normal_row: torch.Tensor,
        *,
        multi_label: bool,
        gamma: float,
        alpha: torch.Tensor | None,
        pattern_weight: float,
        cause_weight: float,
        consistency_weight: float,
    ) -> None:
        super().__init__()
        self.prior: torch.Tensor
        self.normal_row: torch.Tensor
        self.alpha: torch.Tensor | None
        self.register_buffer("prior", prior.float())
        self.register_buffer("normal_row", normal_row.float())
        if alpha is not None:
            self.register_buffer("alpha", alpha.float())
        else:
            self.alpha = None
        self.multi_label = multi_label
        self.gamma = gamma
        self.weights = (pattern_weight, cause_weight, consistency_weight)

    def forward(
        self,
        pattern_logits: torch.Tensor,
        cause_logits: torch.Tensor,
        target: torch.Tensor,
        cause_target: torch.Tensor,
    ) -> LossParts:
        if self.multi_label:
            lp = binary_focal_loss(pattern_logits, target, self.gamma, self.alpha)
        else:
            lp = focal_loss(pattern_logits, target, self.gamma, self.alpha)
        lc = soft_cross_entropy(cause_logits, cause_target)
        implied = pattern_to_cause(pattern_logits, self.prior, self.multi_label, self.normal_row)
        log_cause = nnf.log_softmax(cause_logits.float(), dim=1)
        lk = (implied * (torch.log(implied.clamp(min=_EPS)) - log_cause)).sum(dim=1).mean()
        wp, wc, wk = self.weights
        return LossParts(wp * lp + wc * lc + wk * lk, lp.detach(), lc.detach(), lk.detach())
