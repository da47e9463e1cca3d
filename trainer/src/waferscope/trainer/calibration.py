"""Temperature scaling of the pattern head (Guo et al. 2017), folded into the head weights.

Focal loss and class-balanced sampling leave the pattern head's softmax badly calibrated (it is
under-confident on the natural class mix). One temperature T, chosen to minimise the negative
log-likelihood on the validation maps, fixes most of it without changing any decision: the
pattern layer's weight and bias are divided by T before export, so the ONNX engine, ``head.npz``
and Grad-CAM all see the calibrated logits and the edge needs no extra parameter.

T is fitted on the validation split, the same maps the bundle's metrics come from, so the
reported ECE after scaling is optimistic; the model card says so.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from waferscope.trainer.model import WaferNet

GRID = np.exp(np.linspace(np.log(0.2), np.log(5.0), 241))


def _nll(logits: npt.NDArray[np.float64], targets: npt.NDArray[np.int64], multi: bool) -> float:
    if multi:
        y = targets.astype(np.float64)
        # log(1 + exp(-|x|)) + max(x, 0) - x*y  (stable binary cross-entropy)
        loss = np.logaddexp(0.0, logits) - logits * y
        return float(loss.mean())
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].mean())


def fit_temperature(
    logits: npt.NDArray[np.floating], targets: npt.NDArray[np.int64], multi_label: bool
) -> float:
    """The temperature on a fixed log-spaced grid (0.2..5) with the lowest NLL."""
    x = np.asarray(logits, dtype=np.float64)
    if len(x) == 0:
        return 1.0
    losses = [_nll(x / t, targets, multi_label) for t in GRID]
    return float(GRID[int(np.argmin(losses))])


def apply_temperature(model: WaferNet, temperature: float) -> None:
    """Divide the pattern layer's weight and bias by ``temperature`` (in place)."""
    with torch.no_grad():
        model.pattern_head.weight.div_(temperature)
        model.pattern_head.bias.div_(temperature)
