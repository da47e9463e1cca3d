"""The ``[release]`` section: which roots the edge trusts and the gates a new engine must pass."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ReleaseConfig(BaseModel):
    """Signed engine releases: trust, A/B slots, the local health gate and the shadow trial
    (docs/edge.md#engine-releases)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    trusted_root_keys: list[Path] = Field(
        default_factory=list,
        description="PEM files of the Ed25519 root public keys releases must chain to "
        "(`waferscope release keygen`). Empty: every release is refused.",
    )
    slots_dir: Path | None = Field(
        default=None,
        description="Folder of the A/B engine slots and downloads. Empty: <data_dir>/releases.",
    )
    golden_max_abs_diff: float = Field(
        default=0.5,
        gt=0,
        description="Health gate: largest difference allowed between the candidate's pattern "
        "logits and those of the golden set shipped in the release.",
    )
    golden_min_agreement: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="Health gate: share of golden wafers whose top class must match.",
    )
    latency_budget_ms: float = Field(
        default=250.0,
        gt=0,
        description="Health gate and shadow trial: mean candidate inference time per wafer.",
    )
    shadow_wafers: int = Field(
        default=50,
        ge=0,
        description="Live wafers the candidate classifies in shadow before it may take over "
        "(0: take over right after the health gate).",
    )
    shadow_max_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="End the shadow trial after this long if at least one wafer was shadowed.",
    )
    min_agreement: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Shadow trial: share of wafers on which the candidate's pattern must match "
        "the active engine's for it to take over.",
    )
    max_shadow_errors: int = Field(
        default=0,
        ge=0,
        description="Shadow trial: candidate run-time failures tolerated before it is rolled back.",
    )

    def resolved(self, base: Path, data_dir: Path) -> ReleaseConfig:
        """A copy with relative paths taken from ``base`` and the default slots folder filled."""

        def under(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        return self.model_copy(
            update={
                "trusted_root_keys": [under(p) for p in self.trusted_root_keys],
                "slots_dir": under(self.slots_dir) if self.slots_dir else data_dir / "releases",
            }
        )
