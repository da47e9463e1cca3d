"""The tiny trainer model the trainer and federated tests train (a slim ResNet-18, seconds)."""

from __future__ import annotations

from typing import Any

TINY_MODEL: dict[str, Any] = {
    "backbone": "resnet18",
    "backbone_kwargs": {"channels": [8, 16, 16, 16]},
    "output_stride": 8,
    "hidden": [16],
    "dropout": 0.1,
}
