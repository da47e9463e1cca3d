"""Checkpoints to ONNX: the FP32 export the INT8 engine is quantised from, plus the head weights.

The ONNX graph takes ``input`` (N, 3, S, S) float32 — the protocols encoding — and returns, in
this order, ``pattern_logits``, ``cause_logits``, ``feature_map`` (the last convolutional feature
map) and ``embedding`` (its global average), names and order fixed by
:mod:`waferscope.protocols.bundle`. The batch dimension is dynamic.

Grad-CAM on the edge reads the FP32 head weights from ``head.npz``
(:class:`waferscope.protocols.bundle.HeadWeights`), not from the ONNX file, whose head is
quantised in the INT8 engine.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES
from waferscope.protocols.encoding import EncodingSpec
from waferscope.protocols.errors import WaferscopeError
from waferscope.trainer.config import TrainConfig
from waferscope.trainer.model import WaferNet

log = logging.getLogger(__name__)


class ExportError(WaferscopeError):
    """A model could not be exported or does not match its export."""


@dataclass
class LoadedModel:
    """A trained model with everything its checkpoint says about it."""

    model: WaferNet
    config: TrainConfig
    meta: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def cause_names(self) -> list[str]:
        return list(self.meta["cause_names"])

    @property
    def multi_label(self) -> bool:
        return bool(self.meta["multi_label"])

    @property
    def spec(self) -> EncodingSpec:
        return EncodingSpec.from_dict(self.meta["encoding"])


def load_checkpoint(path: Path) -> LoadedModel:
    """Rebuild the model of a ``best.pt``/``last.pt`` checkpoint (eval mode, CPU, FP32)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ExportError(f"{path}: cannot load checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ExportError(f"{path}: not a waferscope trainer checkpoint")
    cfg = TrainConfig.from_dict(ckpt["config"], origin=str(path))
    # The weights come from the checkpoint; do not look for the original pretrained file.
    model_cfg = cfg.model.model_copy(update={"pretrained_path": None})
    model = WaferNet(model_cfg, len(ckpt["class_names"]), len(ckpt["cause_names"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler")}
    return LoadedModel(model, cfg, meta)


def export_onnx(model: WaferNet, spec: EncodingSpec, path: Path, *, opset: int = 17) -> Path:
    """Export ``model`` (FP32, eval mode) to ONNX with a dynamic batch dimension."""
    model = model.float().eval()
    dummy = torch.zeros((2, *spec.shape), dtype=torch.float32)
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    tmp.replace(path)
    return path


def torch_outputs(model: WaferNet, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    with torch.no_grad():
        out = model.float().eval()(torch.from_numpy(x))
    return [t.numpy() for t in out]


def check_export(
    model: WaferNet, onnx_path: Path, x: npt.NDArray[np.float32], atol: float = 1e-3
) -> float:
    """Largest absolute difference between torch and onnxruntime outputs on ``x``; raises
    :class:`ExportError` above ``atol`` (relative to each output's scale)."""
    from waferscope.trainer.engine import OnnxEngine

    engine = OnnxEngine(onnx_path, threads=2)
    got = engine.run(x)
    want = torch_outputs(model, x)
    worst = 0.0
    for name, a, b in zip(OUTPUT_NAMES, got, want, strict=True):
        scale = max(1.0, float(np.abs(b).max()))
        diff = float(np.abs(a - b).max()) / scale
        worst = max(worst, diff)
        if diff > atol:
            raise ExportError(f"ONNX output {name} differs from torch by {diff:.2e} (> {atol})")
    return worst
