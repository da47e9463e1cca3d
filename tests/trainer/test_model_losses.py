from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as nnf

from waferscope.protocols.bundle import HeadWeights
from waferscope.trainer.config import ModelConfig
from waferscope.trainer.losses import (
    MultiTaskLoss,
    binary_focal_loss,
    focal_loss,
    pattern_to_cause,
)
from waferscope.trainer.model import ModelError, WaferNet, load_backbone_weights
from waferscope.trainer.taxonomy import load_taxonomy

from .conftest import TINY_MODEL

WM811K = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)


def _model(**kw: object) -> WaferNet:
    torch.manual_seed(0)
    return WaferNet(ModelConfig(**{**TINY_MODEL, **kw}), 9, 7).eval()


def test_outputs_and_feature_map_size() -> None:
    model = _model()
    out = model(torch.rand(3, 3, 64, 64))
    assert out.pattern_logits.shape == (3, 9) and out.cause_logits.shape == (3, 7)
    assert out.feature_map.shape[2:] == (8, 8)  # output stride 8 at 64 px
    torch.testing.assert_close(out.embedding, out.feature_map.mean(dim=(2, 3)))
    assert _model(output_stride=None)(torch.rand(1, 3, 64, 64)).feature_map.shape[2:] == (2, 2)


@pytest.mark.parametrize(
    ("backbone", "kwargs"),
    [
        ("efficientnet_b0", {"output_stride": 16}),
        ("mobilenetv3_small_050", {"stem_stride": 1, "output_stride": None}),
    ],
)
def test_other_timm_backbones(backbone: str, kwargs: dict[str, object]) -> None:
    cfg = ModelConfig(backbone=backbone, backbone_kwargs={}, hidden=[8], **kwargs)
    fm = WaferNet(cfg, 9, 7).eval()(torch.rand(1, 3, 64, 64)).feature_map
    assert fm.shape[2] >= 4


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="no_such_net"):
        WaferNet(ModelConfig(backbone="no_such_net"), 9, 7)


def test_local_weights_file(tmp_path) -> None:
    src = _model()
    path = tmp_path / "w.pt"
    torch.save({"state_dict": src.backbone.state_dict()}, path)
    fresh = WaferNet(ModelConfig(**{**TINY_MODEL, "pretrained_path": path}), 9, 7)
    before, after = src.backbone.state_dict(), fresh.backbone.state_dict()
    for a, b in zip(before.values(), after.values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="no tensor matches"):
        load_backbone_weights(fresh.backbone, tmp_path / "bad.pt")


def test_head_weights_give_the_autograd_gradcam() -> None:
    """The edge's Grad-CAM (head weights + feature map only) equals torch autograd Grad-CAM."""
    model = _model(hidden=[12, 10])
    x = torch.rand(4, 3, 64, 64)
    fm = model.backbone(x).detach().requires_grad_(True)
    emb = fm.mean(dim=(2, 3))
    logits = model.pattern_head(model.shared(emb))
    classes = logits.argmax(dim=1)
    logits.gather(1, classes[:, None]).sum().backward()
    assert fm.grad is not None
    alpha_torch = fm.grad.mean(dim=(2, 3)).numpy()
    head = model.head_weights()
    assert isinstance(head, HeadWeights)
    h, w = fm.shape[2:]
    alpha_edge = head.pattern_gradient(emb.detach().numpy(), classes.numpy()) / (h * w)
    np.testing.assert_allclose(alpha_edge, alpha_torch, rtol=1e-4, atol=1e-6)
    p, _ = head.logits(emb.detach().numpy())
    np.testing.assert_allclose(p, logits.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_focal_loss_reduces_to_cross_entropy() -> None:
    logits = torch.randn(8, 9)
    target = torch.randint(0, 9, (8,))
    torch.testing.assert_close(focal_loss(logits, target, 0.0), nnf.cross_entropy(logits, target))
    assert focal_loss(logits, target, 2.0) < nnf.cross_entropy(logits, target)
    hot = (torch.rand(8, 8) > 0.5).float()
    torch.testing.assert_close(
        binary_focal_loss(logits[:, :8], hot, 0.0),
        nnf.binary_cross_entropy_with_logits(logits[:, :8], hot),
    )


def test_multitask_loss_and_consistency() -> None:
    tax = load_taxonomy()
    prior = torch.from_numpy(tax.matrix(WM811K))
    normal = torch.from_numpy(tax.normal_row())
    loss = MultiTaskLoss(
        prior,
        normal,
        multi_label=False,
        gamma=2.0,
        alpha=None,
        pattern_weight=1.0,
        cause_weight=0.5,
        consistency_weight=0.2,
    )
    pattern = torch.randn(5, 9, requires_grad=True)
    cause = torch.randn(5, 7, requires_grad=True)
    y = torch.randint(0, 9, (5,))
    parts = loss(pattern, cause, y, prior[y])
    parts.total.backward()
    assert pattern.grad is not None and cause.grad is not None
    expected = parts.pattern + 0.5 * parts.cause + 0.2 * parts.consistency
    torch.testing.assert_close(parts.total.detach(), expected)
    # Consistency is zero when the cause head says exactly what the pattern head implies.
    implied = pattern_to_cause(pattern.detach(), prior, False, normal)
    agreeing = loss(pattern.detach(), implied.log(), y, prior[y])
    assert float(agreeing.consistency) == pytest.approx(0.0, abs=1e-5)


def test_multi_label_consistency_prior() -> None:
    tax = load_taxonomy()
    names = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Scratch", "Random")
    prior = torch.from_numpy(tax.matrix(names))
    normal = torch.from_numpy(tax.normal_row())
    none_like = torch.full((1, 8), -20.0)
    torch.testing.assert_close(pattern_to_cause(none_like, prior, True, normal)[0], normal)
    center = none_like.clone()
    center[0, 0] = 20.0
    torch.testing.assert_close(
        pattern_to_cause(center, prior, True, normal)[0], prior[0], atol=1e-4, rtol=0
    )


def test_temperature_fit_recovers_a_known_temperature() -> None:
    from waferscope.trainer.calibration import apply_temperature, fit_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 3.0
    probs = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(true_logits * 2.0, targets, False) == pytest.approx(2.0, rel=0.1)
    model = _model()
    x = torch.rand(2, 3, 64, 64)
    before = model(x).pattern_logits
    apply_temperature(model, 2.0)
    torch.testing.assert_close(model(x).pattern_logits, before / 2.0)
