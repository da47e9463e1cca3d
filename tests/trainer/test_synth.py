"""Synthetic maps: generator passes, gradient penalty, conditional sampling, plausibility,
mixing, quality metrics, the training budget and the `waferscope synth` round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from waferscope.protocols.cli.main import main
from waferscope.trainer.config import AugmentConfig, SynthConfig
from waferscope.trainer.data import LabelledData, load_labelled, write_archive
from waferscope.trainer.synth import quality
from waferscope.trainer.synth.budget import add_synthetic, budget
from waferscope.trainer.synth.fit import load_generator, load_real, sample, train_generator
from waferscope.trainer.synth.mixing import mix_batch
from waferscope.trainer.synth.plausibility import (
    PlausibilityConfig,
    check,
    is_plausible,
    project,
    wafer_disc,
)
from waferscope.trainer.synth.registry import SynthError, get_generator, make_config
from waferscope.trainer.synth.vae import vae_loss
from waferscope.trainer.synth.wgan_gp import gradient_penalty

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"
TINY = {"size": 16, "width": 4, "z_dim": 8, "embed_dim": 4, "batch_size": 4}
LOOSE = PlausibilityConfig(max_outside=1.0, min_coverage=0.0, min_fails=0)
CLASSES = ("Donut", "Loc", "Scratch")


def _real_like(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 2, s, s) die/fail channels: the wafer disc with random fails on it."""
    rng = np.random.default_rng(seed)
    disc = wafer_disc(size)
    fail = (rng.random((n, size, size)) < 0.2) & disc
    return torch.from_numpy(np.stack([np.broadcast_to(disc, fail.shape), fail], 1).astype("f4"))


@pytest.mark.parametrize("name", ["wgan-gp", "vae"])
def test_forward_backward_changes_weights(name: str) -> None:
    torch.manual_seed(0)
    cfg = make_config(name, {**TINY, "n_critic": 1} if name == "wgan-gp" else TINY)
    model = get_generator(name).build(cfg, 9)
    before = [p.detach().clone() for p in model.parameters()]  # type: ignore[attr-defined]
    labels, density = torch.tensor([1, 4, 7, 7]), torch.tensor([0.1, 0.2, 0.05, 0.3])
    losses = model.fit_step(_real_like(4), labels, density)
    assert losses and all(np.isfinite(v) for v in losses.values())
    after = list(model.parameters())  # type: ignore[attr-defined]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    out = model.generate(labels, density, torch.Generator().manual_seed(1))
    assert out.shape == (4, 2, 16, 16) and 0.0 <= float(out.min()) <= float(out.max()) <= 1.0


def test_wgan_generator_updates_every_n_critic_steps() -> None:
    model = get_generator("wgan-gp").build(make_config("wgan-gp", {**TINY, "n_critic": 3}), 9)
    labels, density = torch.tensor([1, 4, 7, 7]), torch.full((4,), 0.1)
    seen = ["generator_loss" in model.fit_step(_real_like(4), labels, density) for _ in range(6)]
    assert seen == [False, False, True, False, False, True]


class _Linear(torch.nn.Module):
    """A critic linear in x with weight norm ``scale``: its gradient norm is ``scale``."""

    def __init__(self, n: int, scale: float) -> None:
        super().__init__()
        w = torch.randn(n)
        self.w = w / w.norm() * scale

    def forward(self, x: torch.Tensor, labels: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_gradient_penalty_of_linear_critics() -> None:
    real, fake = _real_like(6) * 2 - 1, torch.rand(6, 2, 16, 16) * 2 - 1
    labels, density = torch.zeros(6, dtype=torch.long), torch.zeros(6)
    gp1 = gradient_penalty(_Linear(512, 1.0), real, fake, labels, density)
    gp3 = gradient_penalty(_Linear(512, 3.0), real, fake, labels, density)
    assert float(gp1) == pytest.approx(0.0, abs=1e-8)  # 1-Lipschitz: no penalty
    assert float(gp3) == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2


def test_vae_loss_terms() -> None:
    target = _real_like(2)
    logits = torch.where(target > 0, 20.0, -20.0)
    zero = torch.zeros(2, 8)
    total, recon, kl = vae_loss(logits, target, zero, zero, beta=1.0, fail_weight=4.0)
    assert float(kl) == 0.0 and float(recon) < 1e-3 and float(total) == pytest.approx(float(recon))
    _, _, kl2 = vae_loss(logits, target, torch.ones(2, 8), zero, beta=1.0, fail_weight=4.0)
    assert float(kl2) == pytest.approx(4.0)  # 0.5 * sum(mu^2) over 8 dims


def test_unknown_generator_and_bad_settings() -> None:
    with pytest.raises(SynthError, match="unknown generator"):
        get_generator("dcgan")
    with pytest.raises(SynthError, match="n_critic"):
        make_config("wgan-gp", {"n_critic": 0})
    with pytest.raises(SynthError, match="power of two"):
        make_config("vae", {"size": 24})
    assert make_config("vae", {"size": 64}).levels == 4


def test_projection_is_plausible_and_keeps_density() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((5, 2, 32, 32)).astype("f4")
    probs[:, 0] = 0.9  # the generator asks for dies everywhere, corners included
    density = np.array([0.0, 0.05, 0.1, 0.5, 1.0], "f4")
    grids = project(probs, PlausibilityConfig(edge_exclusion=2.0), density)
    ring = wafer_disc(32) & ~wafer_disc(32, 2.0)
    for grid, d in zip(grids, density, strict=True):
        assert is_plausible(grid, 2.0) and set(np.unique(grid)) <= {0, 1, 2}
        assert not grid[ring].any()  # the edge-exclusion ring holds no die
        assert (grid == 2).sum() == round(d * (grid > 0).sum())
    assert project(probs[:0], PlausibilityConfig(), density[:0]) == []
    assert not is_plausible(np.full((32, 32), 1, np.uint8))
    assert not is_plausible(np.full((32, 32), 3, np.uint8) * wafer_disc(32))


def test_check_rejects_and_reports_reasons() -> None:
    probs = np.zeros((4, 2, 16, 16), "f4")
    disc = wafer_disc(16)
    probs[0, 0][disc] = 0.9  # fine
    probs[0, 1][5, 5] = 0.9
    probs[1, 0] = 0.9  # dies in the corners: outside
    probs[2, 0][:4][disc[:4]] = 0.9  # too little of the wafer
    probs[3, 0][disc] = 0.9  # a defect class without fails
    ok, report = check(probs, np.array([True, True, True, True]), PlausibilityConfig())
    assert ok.tolist() == [True, False, False, False]
    assert report.rejection_rate == 0.75
    assert report.reasons == {"outside": 1, "coverage": 1, "no_fails": 1}


def test_conditional_sampling_gives_requested_classes(data_dir: Path, tmp_path: Path) -> None:
    real = load_real([data_dir / "wm811k" / "val.npz"], CLASSES, 16, limit=6)
    assert {real.class_names[i] for i in real.labels} == set(CLASSES)
    ckpt = tmp_path / "g.pt"
    first = train_generator("vae", real, ckpt, steps=2, settings=TINY, checkpoint_every=1)
    again = train_generator("vae", real, ckpt, steps=3, settings=TINY)  # resumes at step 2
    assert (first.steps, again.steps) == (2, 3) and len(again.history) >= 1
    loaded = load_generator(ckpt)
    out = sample(loaded, {"Scratch": 3, "Donut": 2}, seed=4, plausibility=LOOSE)
    names = [loaded.class_names[i] for i in out.labels]
    assert names == ["Scratch"] * 3 + ["Donut"] * 2
    assert all(g.shape == (16, 16) and is_plausible(g) for g in out.grids)
    with pytest.raises(SynthError, match="knows only"):
        sample(loaded, {"Center": 1})
    with pytest.raises(SynthError, match="holds a vae"):
        train_generator("wgan-gp", real, ckpt, steps=4, settings=TINY)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SynthError, match="not a generator checkpoint"):
        load_generator(tmp_path / "bad.pt")


def _encoded_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    wafer = torch.zeros(n, 64, 64)
    for i in range(n):  # discs of different radii: the wafers differ
        wafer[i] = torch.from_numpy(wafer_disc(64, edge_exclusion=float(2 * i))).float()
    fails = (torch.rand(n, 64, 64, generator=gen) < 0.3).float() * wafer
    x = torch.stack([fails, fails * 0.5, wafer], 1)
    return x, torch.arange(n) % 4, torch.softmax(torch.randn(n, 7, generator=gen), 1)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixing_respects_the_wafer_mask(mode: str) -> None:
    x, y, cause = _encoded_batch()
    cfg = AugmentConfig.model_validate({f"{mode}_alpha": 1.0, "mix_prob": 1.0})
    mixed = mix_batch(x, y, cause, 4, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(mixed.x[:, 2], x[:, 2])  # each map keeps its own wafer
    off_wafer = (x[:, 2] == 0)[:, None].expand(-1, 2, -1, -1)
    assert not mixed.x[:, :2][off_wafer].any()  # no fail lands off the wafer
    assert torch.allclose(mixed.target.sum(1), torch.ones(8))
    assert torch.allclose(mixed.cause.sum(1), torch.ones(8))
    assert ((mixed.lam >= 0) & (mixed.lam <= 1)).all() and (mixed.lam < 1).any()


def test_no_mixing_keeps_the_batch_and_smooths_labels() -> None:
    x, y, cause = _encoded_batch()
    cfg = AugmentConfig.model_validate({"label_smoothing": 0.1})
    mixed = mix_batch(x, y, cause, 4, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(mixed.x, x) and torch.equal(mixed.lam, torch.ones(8))
    assert float(mixed.target.max()) == pytest.approx(0.925, abs=1e-6)
    assert float(mixed.target.min()) == pytest.approx(0.025, abs=1e-6)


def test_quality_metrics_on_known_cases() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    far = b + 10.0
    assert quality.fid(a, b) < 1.0 < 50.0 < quality.fid(a, far)
    assert quality.one_nn_accuracy(a, far) == 1.0
    assert 0.35 < quality.one_nn_accuracy(a, b) < 0.65
    assert quality.precision_recall(a, a.copy()) == (1.0, 1.0)
    assert quality.precision_recall(a, far) == (0.0, 0.0)
    grid = (wafer_disc(32) * (1 + (rng.random((32, 32)) < 0.2))).astype(np.uint8)
    assert quality.ssim(grid, grid) == pytest.approx(1.0)
    assert quality.ssim(grid, np.zeros_like(grid)) < 0.2
    with pytest.raises(SynthError):
        quality.fid(a[:1], b)


def test_training_budget_from_an_archive(tmp_path: Path) -> None:
    names = ("A", "B", "none")
    disc = wafer_disc(16).astype(np.uint8)
    train = LabelledData([disc] * 10, np.array([0] * 4 + [1] * 2 + [2] * 4), names, False)
    archive = tmp_path / "synth.npz"
    write_archive(archive, [disc * 2] * 6, np.array([0, 0, 0, 1, 1, 1]), names)
    cfg = SynthConfig.model_validate(
        {"source": str(archive), "count": {"A": 2}, "ratio": {"B": 1.0}}
    )
    assert budget(train, cfg) == {"B": 2, "A": 2}
    out = add_synthetic(train, cfg)
    assert len(out) == 14 and out.class_counts() == {"A": 6, "B": 4, "none": 4}
    assert int(out.grids[-1].max()) == 2  # the appended maps are the synthetic ones
    with pytest.raises(SynthError, match="3 maps of B, 5 wanted"):
        add_synthetic(train, cfg.model_copy(update={"count": {"B": 5}, "ratio": {}}))
    with pytest.raises(SynthError, match="unknown classes"):
        budget(train, cfg.model_copy(update={"count": {"Z": 1}}))
    assert add_synthetic(train, SynthConfig()) is train


@pytest.mark.slow
def test_cli_train_sample_score_round_trip(data_dir: Path, tmp_path: Path) -> None:
    ckpt, archive = tmp_path / "vae.pt", tmp_path / "out" / "rare.npz"
    val = str(data_dir / "wm811k" / "val.npz")
    sets = [a for kv in ("size=16", "width=4", "z_dim=8", "batch_size=4") for a in ("--set", kv)]
    assert main(["synth", "train", "-d", val, "-o", str(ckpt), "-g", "vae", "--steps", "2",
                 "--limit", "8", *sets]) == 0  # fmt: skip
    loose = ["--max-outside", "1.0", "--min-coverage", "0.0"]
    assert main(["synth", "sample", "-g", str(ckpt), "-o", str(archive), "-n", "3", *loose]) == 0
    data = load_labelled([archive])
    assert data.class_counts()["Scratch"] == 3 and len(data) == 9
    assert archive.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    report = json.loads(archive.with_suffix(".plausibility.json").read_text())
    assert report["checked"] >= 9 and 0.0 <= report["rejection_rate"] <= 1.0
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("no default bundle for the embedding")
    scores = tmp_path / "scores.json"
    assert main(["synth", "score", "-g", str(ckpt), "-r", val, "-b", str(DEFAULT_BUNDLE), "-n",
                 "6", "-k", "Donut", "--json", str(scores), *loose]) == 0  # fmt: skip
    row = json.loads(scores.read_text())["classes"]["Donut"]["generated"]
    assert {"fid", "one_nn", "precision", "recall", "ssim"} <= set(row) and row["n_fake"] == 6


@pytest.mark.slow
def test_training_with_synthetic_budget_and_mixing(data_dir: Path, tmp_path: Path) -> None:
    from waferscope.trainer.train import train

    from .conftest import tiny_config

    real = load_labelled([data_dir / "wm811k" / "val.npz"])
    idx = np.flatnonzero(real.targets == real.class_names.index("Scratch"))[:5]
    archive = tmp_path / "synth.npz"
    write_archive(archive, [real.grids[int(i)] for i in idx], real.targets[idx], real.class_names)
    cfg = tiny_config(
        tmp_path,
        data_dir,
        name="synth-mix",
        synth={"source": str(archive), "count": {"Scratch": 4}},
        augment={"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mix_prob": 1.0, "label_smoothing": 0.1},
        optim={"epochs": 1},
    )
    result = train(cfg, resume=False, show_progress=False)
    ckpt = torch.load(result.run_dir / "best.pt", map_location="cpu", weights_only=False)
    assert "synth.npz" in [f["name"] for f in ckpt["data_files"]]
    assert np.isfinite(result.history[0]["loss"]) and result.history[0]["loss"] > 0
