"""The training configuration: typed, validated, serialisable.

A config file is TOML (``.toml``) or JSON (``.json``); every section and key is optional and
takes the default shown here. Unknown keys are errors (a typo must not silently do nothing).
:meth:`TrainConfig.dump` writes the complete, resolved config as JSON; a run keeps that copy next
to its checkpoints, and ``waferscope train --config <run>/config.json`` repeats the run.

Overrides from the command line use dotted keys: ``--set optim.epochs=3 --set data.batch_size=64``
(the value is parsed as JSON when it can be, else taken as a string).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from waferscope.protocols.encoding import MAX_SIZE, MIN_SIZE
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.settings import Section

# Test-time augmentation baked into the engine (waferscope.trainer.tta).
TtaMode = Literal["none", "d4"]


class ConfigError(WaferscopeError):
    """A training configuration could not be read or is invalid."""


class _Section(Section):
    """A training config section: the kernel's :class:`Section`, frozen once read."""

    model_config = ConfigDict(frozen=True)


class DataConfig(_Section):
    """Where the labelled maps come from and how they are fed."""

    train: list[Path] = Field(default_factory=list, description="Training files (npz or maps).")
    val: list[Path] = Field(
        default_factory=list,
        description="Validation files; empty = a stratified split of `train` (val_fraction).",
    )
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    encoding_size: int = Field(64, ge=MIN_SIZE, le=MAX_SIZE)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    num_workers: int = Field(1, ge=0)
    epoch_samples: int | None = Field(
        None, ge=1, description="Maps drawn per epoch by the sampler (default: the train size)."
    )
    balance_power: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Class-balanced sampling: a map of class c is drawn with weight n_c^-power "
        "(0 = natural frequencies, 1 = every class equally often).",
    )
    limit_per_class: int | None = Field(
        None, ge=1, description="Keep at most this many maps per class (tests, quick runs)."
    )
    val_limit_per_class: int | None = Field(None, ge=1)

    @field_validator("train")
    @classmethod
    def _need_train(cls, v: list[Path]) -> list[Path]:
        if not v:
            raise ValueError("at least one training file is required")
        return v


class ModelConfig(_Section):
    """The classifier: a timm backbone, global average pooling, shared dense layers, two heads."""

    backbone: str = "resnet18"
    backbone_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to timm.create_model (e.g. channels, stem)."
    )
    output_stride: int | None = Field(
        8, description="Total stride of the last feature map (timm output_stride); None = native."
    )
    stem_stride: int | None = Field(
        None, description="Override the stride of the first strided convolution (1 or 2)."
    )
    hidden: list[int] = Field(default_factory=lambda: [256])
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    pretrained_path: Path | None = Field(
        None, description="Local backbone weights (a state dict file); nothing is downloaded."
    )
    multi_label: bool = Field(False, description="Sigmoid pattern outputs (MixedWM38).")
    init_checkpoint: Path | None = Field(
        None,
        description="Fine-tune: start from the weights of this run checkpoint (best.pt / "
        "last.pt) instead of a fresh model; its class and cause lists must match the data's.",
    )

    @field_validator("output_stride")
    @classmethod
    def _stride(cls, v: int | None) -> int | None:
        if v is not None and v not in (8, 16, 32):
            raise ValueError("output_stride must be 8, 16 or 32")
        return v

    @field_validator("stem_stride")
    @classmethod
    def _stem(cls, v: int | None) -> int | None:
        if v is not None and v not in (1, 2):
            raise ValueError("stem_stride must be 1 or 2")
        return v


class LossConfig(_Section):
    focal_gamma: float = Field(2.0, ge=0.0)
    class_alpha: dict[str, float] | None = Field(
        None, description="Per-class focal alpha by class name (missing classes: 1.0)."
    )
    pattern_weight: float = Field(1.0, ge=0.0)
    cause_weight: float = Field(0.3, ge=0.0)
    consistency_weight: float = Field(0.1, ge=0.0)


class AugmentPolicy(_Section):
    """Probabilities and strengths of each augmentation (see :mod:`.augment`)."""

    flip: float = Field(0.5, ge=0.0, le=1.0)
    rot90: float = Field(1.0, ge=0.0, le=1.0)
    rotate: float = Field(0.3, ge=0.0, le=1.0)
    rotate_max_deg: float = Field(45.0, ge=0.0, le=180.0)
    elastic: float = Field(0.15, ge=0.0, le=1.0)
    elastic_alpha: float = Field(1.0, ge=0.0, description="Displacement scale, in dies.")
    elastic_sigma: float = Field(3.0, gt=0.0, description="Smoothness of the field, in dies.")
    density: float = Field(0.2, ge=0.0, le=1.0)
    density_range: tuple[float, float] = (0.75, 1.25)
    jitter: float = Field(0.2, ge=0.0, le=1.0)
    jitter_fraction: float = Field(0.1, ge=0.0, le=1.0)
    cluster: float = Field(0.15, ge=0.0, le=1.0)
    cluster_erode: bool = Field(True, description="Cluster modulation may shrink clusters too.")

    @field_validator("density_range")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0.0 < v[0] <= v[1] <= 2.0):
            raise ValueError("density_range must satisfy 0 < low <= high <= 2")
        return v


class AugmentConfig(_Section):
    enabled: bool = True
    default: AugmentPolicy = Field(default_factory=lambda: AugmentPolicy.model_validate({}))
    per_class: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Class name -> AugmentPolicy fields overriding default."
    )
    mixup_alpha: float = Field(
        0.0, ge=0.0, description="Mixup Beta(alpha, alpha) (0 = off; synth/mixing.py)."
    )
    cutmix_alpha: float = Field(0.0, ge=0.0, description="CutMix Beta(alpha, alpha) (0 = off).")
    mix_prob: float = Field(0.0, ge=0.0, le=1.0, description="Share of maps that are mixed.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_overrides(self) -> AugmentConfig:
        for name in self.per_class:
            self.policy_for(name)
        return self

    def policy_for(self, class_name: str) -> AugmentPolicy:
        override = self.per_class.get(class_name)
        if not override:
            return self.default
        try:
            return AugmentPolicy.model_validate({**self.default.model_dump(), **override})
        except ValidationError as exc:
            raise ValueError(f"augment.per_class.{class_name}: {exc}") from None


class SynthConfig(_Section):
    """Synthetic maps added to the training split (never to val): the per-class budget."""

    source: Path | None = Field(
        None,
        description="A generator checkpoint (.pt, sampled at start) or a sampled archive (.npz).",
    )
    count: dict[str, int] = Field(
        default_factory=dict, description="Class name -> synthetic maps added."
    )
    ratio: dict[str, float] = Field(
        default_factory=dict,
        description="Class name -> synthetic maps added as a share of its real training maps.",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _budget(self) -> SynthConfig:
        if any(v < 0 for v in self.count.values()) or any(v < 0 for v in self.ratio.values()):
            raise ValueError("synth.count and synth.ratio must not be negative")
        if self.source is not None and not (self.count or self.ratio):
            raise ValueError("synth.source is set but no per-class count or ratio")
        return self

    @property
    def enabled(self) -> bool:
        return self.source is not None


class OptimConfig(_Section):
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    epochs: int = Field(30, ge=1)
    warmup_epochs: float = Field(1.0, ge=0.0)
    min_lr_ratio: float = Field(0.02, ge=0.0, le=1.0)
    grad_clip: float | None = Field(5.0, gt=0.0)


class RunConfig(_Section):
    output_dir: Path = Path("trainer/runs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 AMP on CUDA, bf16 autocast on CPUs with native bf16."
    )
    threads: int | None = Field(2, ge=1, description="torch CPU threads (None = torch default).")
    distributed: Literal["auto", "none", "dp"] = Field(
        "auto", description="auto: DataParallel when several GPUs are visible (DDP: torchrun)."
    )
    early_stopping_patience: int = Field(6, ge=1)
    select_metric: Literal["macro_f1", "macro_f1_defects", "exact_match", "accuracy"] = "macro_f1"
    max_minutes: float | None = Field(None, gt=0.0, description="Stop after this wall time.")
    budget_minutes: float | None = Field(
        None,
        gt=0.0,
        description="Fit the schedule to this wall time: after the first epoch the number of "
        "epochs becomes what fits (at most optim.epochs) and the cosine decay follows it.",
    )
    channels_last: bool = Field(
        False, description="channels-last memory format for model and batches (fast on GPUs)."
    )
    deterministic: bool = True


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI; None = file store ./mlruns.")
    experiment: str = "waferscope"


class ExportConfig(_Section):
    calibration_samples: int = Field(512, ge=8)
    opset: int = Field(17, ge=13)
    per_channel: bool = True
    tta: TtaMode = Field(
        "none",
        description="Test-time augmentation baked into the engine: 'd4' averages the logits of "
        "the 8 quarter-turn and mirror views (8x the engine cost; see docs/trainer.md).",
    )


class TrainConfig(_Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = 0
    taxonomy: Path | None = Field(None, description="Root-cause taxonomy TOML (None = built in).")
    data: DataConfig
    model: ModelConfig = Field(default_factory=lambda: ModelConfig.model_validate({}))
    loss: LossConfig = Field(default_factory=lambda: LossConfig.model_validate({}))
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig.model_validate({}))
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig.model_validate({}))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    run: RunConfig = Field(default_factory=lambda: RunConfig.model_validate({}))
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig.model_validate({}))
    export: ExportConfig = Field(default_factory=lambda: ExportConfig.model_validate({}))

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dump(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, origin: str = "config") -> TrainConfig:
        try:
            return cls.model_validate(dict(doc))
        except ValidationError as exc:
            lines = [
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigError(f"{origin}: invalid configuration: " + "; ".join(lines)) from None


def _set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = doc
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``key=value`` strings to (key, value); values are JSON when they parse, else strings."""
    out: list[tuple[str, Any]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append((key.strip(), value))
    return out


def load_config(path: Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a TOML or JSON config file, apply ``key=value`` overrides, validate.

    Relative data, taxonomy and weight paths in the file are taken relative to the current
    directory (run commands from the repository root, as the model card does).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc: dict[str, Any] = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    for key, value in parse_overrides(overrides):
        _set_dotted(doc, key, value)
    return TrainConfig.from_dict(doc, origin=str(path))
