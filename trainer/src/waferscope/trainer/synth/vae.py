"""Conditional VAE: encoder and decoder conditioned on class and fail density; latent sampling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from pydantic import Field
from torch import nn

from waferscope.trainer.synth.registry import GeneratorConfig, GeneratorPlugin, register
from waferscope.trainer.synth.wgan_gp import ConditionalGenerator, conditions


class VaeConfig(GeneratorConfig):
    lr: float = Field(1e-3, gt=0.0)
    beta: float = Field(1.0, ge=0.0, description="Weight of the KL term (beta-VAE).")
    fail_weight: float = Field(
        4.0, gt=0.0, description="Weight of the fail channel in the reconstruction loss."
    )


class ConditionalEncoder(nn.Module):
    """Map + condition planes -> strided convolutions -> (mu, logvar) of q(z | x, c)."""

    def __init__(self, cfg: GeneratorConfig, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        layers: list[nn.Module] = []
        ch, side = 2 + cfg.embed_dim + 1, cfg.size
        for level in range(cfg.levels):
            out = cfg.width * 2**level
            side //= 2
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            ch = out
        self.body = nn.Sequential(*layers)
        self.mu = nn.Linear(ch * side * side, cfg.z_dim)
        self.logvar = nn.Linear(ch * side * side, cfg.z_dim)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, density: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cond = conditions(labels, density, self.embed)
        planes = cond[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = self.body(torch.cat([x, planes], dim=1)).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)


def vae_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    fail_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, KL), summed over pixels and averaged over maps."""
    weights = torch.tensor([1.0, fail_weight], dtype=logits.dtype).view(1, 2, 1, 1)
    bce = nnf.binary_cross_entropy_with_logits(logits, target, reduction="none") * weights
    recon = bce.flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return recon + beta * kl, recon, kl


class ConditionalVae(nn.Module):
    """The plugin model: encoder, decoder (the WGAN generator's architecture), one optimiser."""

    def __init__(self, cfg: VaeConfig, n_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ConditionalEncoder(cfg, n_classes)
        self.decoder = ConditionalGenerator(cfg, n_classes)
        self.opt = torch.optim.Adam(
            list(self.encoder.parameters()) + list(self.decoder.parameters()), lr=cfg.lr
        )

    def forward(
        self, maps: torch.Tensor, labels: torch.Tensor, density: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(maps, labels, density)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z, labels, density), mu, logvar

    def fit_step(
        self, maps: torch.Tensor, labels: torch.Tensor, density: torch.Tensor
    ) -> dict[str, float]:
        logits, mu, logvar = self(maps, labels, density)
        loss, recon, kl = vae_loss(logits, maps, mu, logvar, self.cfg.beta, self.cfg.fail_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        return {
            "loss": float(loss.detach()),
            "reconstruction": float(recon.detach()),
            "kl": float(kl.detach()),
        }

    @torch.no_grad()
    def generate(
        self, labels: torch.Tensor, density: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """Decode latents drawn from the prior N(0, I) under the given conditions."""
        was = self.decoder.training
        self.decoder.eval()
        z = torch.randn(labels.shape[0], self.cfg.z_dim, generator=gen)
        out = torch.sigmoid(self.decoder(z, labels, density))
        self.decoder.train(was)
        return out

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {
            "encoder": self.encoder.state_dict(),
            "decoder": self.decoder.state_dict(),
            "opt": self.opt.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        self.opt.load_state_dict(state["opt"])


def _build(cfg: GeneratorConfig, n_classes: int) -> ConditionalVae:
    assert isinstance(cfg, VaeConfig)
    return ConditionalVae(cfg, n_classes)


PLUGIN = register(GeneratorPlugin("vae", VaeConfig, _build))
