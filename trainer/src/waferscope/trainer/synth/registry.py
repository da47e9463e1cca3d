"""The generator registry: each plugin module registers its config and model class by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from waferscope.protocols.errors import WaferscopeError


class SynthError(WaferscopeError):
    """A synthetic-data generator, checkpoint or request is invalid."""


class GeneratorConfig(BaseModel):
    """Settings every generator shares (plugins add their own fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(64, ge=16, le=256, description="Square map size, in dies (the encoding).")
    z_dim: int = Field(64, ge=2)
    embed_dim: int = Field(16, ge=2, description="Class embedding width.")
    width: int = Field(32, ge=4, description="Channels of the finest convolution layer.")
    lr: float = Field(2e-4, gt=0.0)
    batch_size: int = Field(64, ge=2)

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1) or v < 4:
            raise ValueError(f"size {v} must be 4 times a power of two (16, 32, 64, ...)")
        return v

    @property
    def levels(self) -> int:
        """Up/down-sampling stages between a 4x4 seed and the map."""
        return (self.size // 4).bit_length() - 1


class SynthModel(Protocol):
    """What training and sampling need from a generator plugin."""

    @property
    def cfg(self) -> GeneratorConfig: ...

    def fit_step(
        self, maps: torch.Tensor, labels: torch.Tensor, density: torch.Tensor
    ) -> dict[str, float]:
        """One optimisation step on real maps (N, 2, S, S) in {0, 1}: die, fail channels."""
        ...

    def generate(
        self, labels: torch.Tensor, density: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """Probabilities (N, 2, S, S) in [0, 1] of a die and of a fail for the given conditions."""
        ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class GeneratorPlugin:
    name: str
    config_type: type[GeneratorConfig]
    build: Callable[[GeneratorConfig, int], SynthModel]


GENERATORS: dict[str, GeneratorPlugin] = {}


def register(plugin: GeneratorPlugin) -> GeneratorPlugin:
    GENERATORS[plugin.name] = plugin
    return plugin


def get_generator(name: str) -> GeneratorPlugin:
    """The plugin registered as ``name`` (importing the built-in plugins first)."""
    from waferscope.trainer.synth import vae, wgan_gp  # noqa: F401 - registers the plugins

    try:
        return GENERATORS[name]
    except KeyError:
        raise SynthError(f"unknown generator {name!r}; known: {sorted(GENERATORS)}") from None


def make_config(name: str, values: dict[str, Any]) -> GeneratorConfig:
    """The validated config of generator ``name`` from plain values."""
    from pydantic import ValidationError

    plugin = get_generator(name)
    try:
        return plugin.config_type.model_validate(values)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SynthError(f"generator {name}: invalid settings: {errors}") from None
