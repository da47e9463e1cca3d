"""Conditional WGAN-GP: generator and critic conditioned on class and fail density."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from waferscope.trainer.synth.registry import (
    GeneratorConfig,
    GeneratorPlugin,
    register,
)


class WganGpConfig(GeneratorConfig):
    n_critic: int = Field(5, ge=1, description="Critic updates per generator update.")
    gp_weight: float = Field(10.0, ge=0.0, description="Gradient penalty weight (lambda).")
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.9, ge=0.0, lt=1.0)


def conditions(labels: torch.Tensor, density: torch.Tensor, embed: nn.Embedding) -> torch.Tensor:
    """(N, embed_dim + 1): the class embedding and the fail density of each map."""
    return torch.cat([embed(labels), density.view(-1, 1).to(embed.weight.dtype)], dim=1)


class ConditionalGenerator(nn.Module):
    """z + condition -> 4x4 seed -> transposed convolutions -> (N, 2, S, S) logits."""

    def __init__(self, cfg: GeneratorConfig, n_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        top = cfg.width * 2 ** (cfg.levels - 1)
        self.seed = nn.Linear(cfg.z_dim + cfg.embed_dim + 1, top * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(top), nn.ReLU(inplace=True)]
        ch = top
        for level in range(cfg.levels):
            out = 2 if level == cfg.levels - 1 else max(ch // 2, cfg.width)
            layers.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1))
            if level != cfg.levels - 1:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.body = nn.Sequential(*layers)
        self.top = top

    def forward(self, z: torch.Tensor, labels: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        h = self.seed(torch.cat([z, conditions(labels, density, self.embed)], dim=1))
        out: torch.Tensor = self.body(h.view(-1, self.top, 4, 4))
        return out


class ConditionalCritic(nn.Module):
    """Map (N, 2, S, S) + condition planes -> strided convolutions -> one score per map.

    No batch normalisation (it would break the per-sample gradient penalty); layer norm instead.
    """

    def __init__(self, cfg: GeneratorConfig, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        layers: list[nn.Module] = []
        ch, side = 2 + cfg.embed_dim + 1, cfg.size
        for level in range(cfg.levels):
            out = cfg.width * 2**level
            side //= 2
            layers += [
                nn.Conv2d(ch, out, 4, stride=2, padding=1),
                nn.GroupNorm(1, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch * side * side, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        cond = conditions(labels, density, self.embed)
        planes = cond[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = self.body(torch.cat([x, planes], dim=1))
        out: torch.Tensor = self.head(h.flatten(1)).squeeze(1)
        return out


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor,
    density: torch.Tensor,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Gulrajani et al.: E[(||grad_x critic(x_hat)||_2 - 1)^2] on random interpolates x_hat."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=gen, dtype=real.dtype)
    x_hat = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    score = critic(x_hat, labels, density)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    penalty: torch.Tensor = ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
    return penalty


class WganGp(nn.Module):
    """The plugin model: generator, critic, their optimisers and the n_critic schedule."""

    def __init__(self, cfg: WganGpConfig, n_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = ConditionalGenerator(cfg, n_classes)
        self.critic = ConditionalCritic(cfg, n_classes)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=betas)
        self.critic_steps = 0

    def _fake(self, n: int, labels: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        z = torch.randn(n, self.cfg.z_dim)
        return torch.tanh(self.generator(z, labels, density))

    def fit_step(
        self, maps: torch.Tensor, labels: torch.Tensor, density: torch.Tensor
    ) -> dict[str, float]:
        """One critic update, and a generator update after every ``n_critic`` of them."""
        real = maps * 2.0 - 1.0
        with torch.no_grad():
            fake = self._fake(real.shape[0], labels, density)
        wdist = (
            self.critic(real, labels, density).mean() - self.critic(fake, labels, density).mean()
        )
        gp = gradient_penalty(self.critic, real, fake, labels, density)
        loss_c = -wdist + self.cfg.gp_weight * gp
        self.opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        self.opt_c.step()
        self.critic_steps += 1
        out = {
            "wasserstein": float(wdist.detach()),
            "gp": float(gp.detach()),
            "critic_loss": float(loss_c.detach()),
        }
        if self.critic_steps % self.cfg.n_critic == 0:
            fake = self._fake(real.shape[0], labels, density)
            loss_g = -self.critic(fake, labels, density).mean()
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            out["generator_loss"] = float(loss_g.detach())
        return out

    @torch.no_grad()
    def generate(
        self, labels: torch.Tensor, density: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        was = self.generator.training
        self.generator.eval()
        z = torch.randn(labels.shape[0], self.cfg.z_dim, generator=gen)
        out = (torch.tanh(self.generator(z, labels, density)) + 1.0) / 2.0
        self.generator.train(was)
        return out

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_c": self.opt_c.state_dict(),
            "critic_steps": self.critic_steps,
        }

    def load_state_dict(self, state: dict[str, Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_c.load_state_dict(state["opt_c"])
        self.critic_steps = int(state["critic_steps"])


def _build(cfg: GeneratorConfig, n_classes: int) -> WganGp:
    assert isinstance(cfg, WganGpConfig)
    return WganGp(cfg, n_classes)


PLUGIN = register(GeneratorPlugin("wgan-gp", WganGpConfig, _build))
