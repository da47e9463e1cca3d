"""The multi-task wafer classifier: timm backbone -> GAP -> shared dense layers -> two heads.

Outputs (in this order, also the ONNX output order): pattern logits (N, P), root-cause logits
(N, C), the last convolutional feature map (N, F, h, w) and the pooled embedding (N, F).

The head is deliberately simple — global average pooling, ``Linear -> ReLU -> Dropout`` layers,
then one ``Linear`` per head — so that the edge can compute Grad-CAM from the engine's feature
map and embedding plus the head weights alone (``head.npz``,
:class:`waferscope.protocols.bundle.HeadWeights`): for a class
score ``s`` the gradient with respect to the pooled embedding is a chain of the head's weight
matrices masked by the ReLUs that are on, and the Grad-CAM channel weights are that gradient
divided by h*w.

Backbones come from timm by name and are trained from scratch; ``pretrained_path`` loads a local
state dict (nothing is downloaded). ``output_stride`` (timm) keeps the last feature map large
enough for Grad-CAM (8 gives 8x8 at 64 px); ``stem_stride`` 1 halves the stride of the first
strided convolution for backbones without ``output_stride`` support.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import timm
import torch
from torch import nn

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES, HeadWeights
from waferscope.protocols.errors import WaferscopeError
from waferscope.trainer.config import ModelConfig

log = logging.getLogger(__name__)

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "WaferNet", "WaferNetOutput"]


class ModelError(WaferscopeError):
    """A backbone could not be built or weights could not be loaded."""


class WaferNetOutput(NamedTuple):
    pattern_logits: torch.Tensor
    cause_logits: torch.Tensor
    feature_map: torch.Tensor
    embedding: torch.Tensor


def _reduce_stem_stride(backbone: nn.Module) -> None:
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
            return
    raise ModelError("stem_stride: the backbone has no strided convolution to change")


def build_backbone(cfg: ModelConfig, in_chans: int) -> nn.Module:
    kwargs: dict[str, Any] = dict(cfg.backbone_kwargs)
    if cfg.output_stride is not None and cfg.output_stride != 32:
        kwargs["output_stride"] = cfg.output_stride
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    try:
        backbone = timm.create_model(
            cfg.backbone,
            pretrained=False,
            num_classes=0,
            global_pool="",
            in_chans=in_chans,
            **kwargs,
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot build backbone {cfg.backbone!r} with {kwargs}: {exc}") from None
    if cfg.stem_stride == 1:
        _reduce_stem_stride(backbone)
    if cfg.pretrained_path is not None:
        load_backbone_weights(backbone, cfg.pretrained_path)
    return backbone


def load_backbone_weights(backbone: nn.Module, path: Path) -> None:
    """Load a local state dict (plain, or under "state_dict"/"model"); head keys are ignored."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load weights: {exc}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{path}: no tensor matches the backbone (wrong architecture?)")
    backbone.load_state_dict(usable, strict=False)
    log.info("loaded %d of %d backbone tensors from %s", len(usable), len(own), path)


class WaferNet(nn.Module):
    def __init__(self, cfg: ModelConfig, n_patterns: int, n_causes: int, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg, in_chans)
        width = int(getattr(self.backbone, "num_features"))  # noqa: B009
        layers: list[nn.Module] = []
        for hidden in cfg.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=False), nn.Dropout(cfg.dropout)]
            width = hidden
        self.shared = nn.Sequential(*layers)
        self.pattern_head = nn.Linear(width, n_patterns)
        self.cause_head = nn.Linear(width, n_causes)
        self.embedding_dim = int(getattr(self.backbone, "num_features"))  # noqa: B009

    def forward(self, x: torch.Tensor) -> WaferNetOutput:
        # forward_features: the last convolutional feature map, before any timm head (for
        # MobileNetV3 that is before its 1x1 conv_head, which is not used).
        features: torch.Tensor = self.backbone.forward_features(x)  # type: ignore[operator]
        embedding = features.mean(dim=(2, 3))
        shared = self.shared(embedding)
        return WaferNetOutput(
            self.pattern_head(shared), self.cause_head(shared), features, embedding
        )

    def head_weights(self) -> HeadWeights:
        """The head as the bundle contract stores it (dense layers with ReLU, two linear heads)."""

        def arr(t: torch.Tensor) -> Any:
            return t.detach().cpu().float().numpy()

        dense = [m for m in self.shared if isinstance(m, nn.Linear)]
        return HeadWeights.from_arrays(
            [(arr(m.weight), arr(m.bias), "relu") for m in dense],
            (arr(self.pattern_head.weight), arr(self.pattern_head.bias)),
            (arr(self.cause_head.weight), arr(self.cause_head.bias)),
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
