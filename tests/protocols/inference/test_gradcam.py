"""Grad-CAM from engine outputs + head (numpy) equals torch autograd Grad-CAM on the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sample_wafers import encoded_maps

from waferscope.protocols.inference import (
    OnnxRuntimeRunner,
    die_relevance,
    gradcam_maps,
    hot_regions,
    load_bundle,
    overlay_png,
    upsample,
)

torch = pytest.importorskip("torch", reason="the reference Grad-CAM needs torch autograd")
import tiny_bundle  # noqa: E402
from torch.nn import functional  # noqa: E402


def torch_gradcam(net: tiny_bundle.TinyWaferNet, x: np.ndarray, classes: list[int]) -> np.ndarray:
    """Textbook Grad-CAM with autograd: weights = spatial mean of d score / d feature map."""
    xt = torch.from_numpy(x)
    pattern, _, fm, _ = net(xt)
    fm.retain_grad()
    pattern[torch.arange(len(classes)), torch.tensor(classes)].sum().backward()
    assert fm.grad is not None
    alpha = fm.grad.mean(dim=(2, 3), keepdim=True)
    return functional.relu((alpha * fm).sum(dim=1)).detach().numpy()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


def test_gradcam_matches_torch_autograd(built_bundle: tuple[Path, Path], val_npz: Path) -> None:
    folder, weights = built_bundle
    net = tiny_bundle.load_torch(weights)
    bundle = load_bundle(folder)
    assert bundle.reference_path is not None
    runner = OnnxRuntimeRunner(bundle.reference_path, threads=1)  # the FP32 engine
    x, _ = encoded_maps(val_npz, 90, seed=11)
    outputs = runner.run(x)
    classes = [int(c) for c in outputs.pattern_logits.argmax(axis=1)]

    ours = gradcam_maps(outputs, bundle.head, classes)
    reference = torch_gradcam(net, x, classes)
    assert ours.shape == reference.shape
    checked = 0
    for mine, theirs in zip(ours, reference, strict=True):
        if theirs.max() <= 1e-6 or theirs.std() < 1e-6:
            continue  # a flat map has no correlation to speak of
        assert _corr(mine, theirs) >= 0.99
        np.testing.assert_allclose(mine, theirs, rtol=2e-3, atol=2e-4 * float(theirs.max()))
        checked += 1
    assert checked >= 60

    # also on the model-input grid, against torch's bilinear resize
    size = bundle.encoding.size
    big_theirs = functional.interpolate(
        torch.from_numpy(reference)[:, None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )[:, 0].numpy()
    big_ours = upsample(ours, size)
    for mine, theirs in zip(big_ours, big_theirs, strict=True):
        if theirs.max() > 1e-6 and theirs.std() > 1e-6:
            assert _corr(mine, theirs) >= 0.99


def test_int8_engine_gradcam_stays_close_to_fp32(bundle_dir: Path, val_npz: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.reference_path is not None
    x, _ = encoded_maps(val_npz, 45, seed=12)
    fp32 = OnnxRuntimeRunner(bundle.reference_path, threads=1).run(x)
    int8 = OnnxRuntimeRunner(bundle.engine_path, threads=1).run(x)
    classes = [int(c) for c in fp32.pattern_logits.argmax(axis=1)]
    a = upsample(gradcam_maps(fp32, bundle.head, classes), 64)
    b = upsample(gradcam_maps(int8, bundle.head, classes), 64)
    corr = [_corr(p, q) for p, q in zip(a, b, strict=True) if p.std() > 1e-6 and q.std() > 1e-6]
    assert np.median(corr) > 0.8  # quantisation moves the map a little, not its meaning


def test_hot_regions_and_overlay(artifacts_dir: Path) -> None:
    states = np.ones((20, 20), dtype=np.uint8)
    states[0, 0] = states[0, 19] = 0
    states[5:8, 5:9] = 2
    relevance = np.zeros((20, 20), dtype=np.float32)
    relevance[4:9, 4:10] = 0.9
    relevance[15, 15] = 0.6
    regions = hot_regions(relevance, states, origin=(-10, 3), threshold=0.5, limit=5)
    assert len(regions) == 2
    first = regions[0]
    assert (first.x_min, first.y_min, first.x_max, first.y_max) == (-6, 7, -1, 11)
    assert first.fail_count == 12
    assert len(first.dies) == 30
    assert regions[1].dies == ((5, 18),)
    png = overlay_png(states, relevance, regions, origin=(-10, 3), title="Loc 90%")
    assert png.startswith(b"\x89PNG")
    (artifacts_dir / "overlay-synthetic.png").write_bytes(png)


def test_die_relevance_follows_the_encoding_geometry() -> None:
    heat = np.zeros((64, 64), dtype=np.float32)
    heat[:, :32] = 1.0  # left half of the model input
    rel = die_relevance(heat, 10, 30)  # wide map: padded top and bottom, spans the width
    assert rel[:, :15].min() == 1.0 and rel[:, 15:].max() == 0.0
    rel_u8 = die_relevance((heat * 255).astype(np.uint8), 10, 30)
    np.testing.assert_allclose(rel, rel_u8)
