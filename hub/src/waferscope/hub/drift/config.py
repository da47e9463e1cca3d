"""The ``[drift]`` section of the hub configuration: windows, test, correction and cost bounds."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from waferscope.protocols.settings import Section


class DriftConfig(Section):
    """Drift monitoring per (device, model version): class histogram and embedding drift."""

    enabled: bool = Field(default=True, description="Run the drift job (hub worker 0).")
    interval_s: float = Field(default=900, gt=0, description="Seconds between drift runs.")
    reference: Literal["first", "dates"] = Field(
        default="first",
        description="Reference window: the first `reference_size` results of each model version "
        "on each device ('first'), or the results between `reference_from` and `reference_to` "
        "('dates').",
    )
    reference_size: int = Field(
        default=500, ge=10, description="Results in the reference window ('first')."
    )
    reference_from: datetime | None = Field(
        default=None, description="Start of the reference window ('dates'; UTC)."
    )
    reference_to: datetime | None = Field(
        default=None, description="End of the reference window ('dates'; UTC)."
    )
    current_size: int = Field(
        default=500, ge=10, description="The current window: the newest results, at most this many."
    )
    current_window_s: int | None = Field(
        default=None,
        ge=60,
        description="...and only those of the last this many seconds (unset: no time limit).",
    )
    min_results: int = Field(
        default=50,
        ge=5,
        description="Both windows need at least this many results for a test (else "
        "'insufficient').",
    )
    alpha: float = Field(
        default=0.01, gt=0, lt=1, description="Alert when a corrected p-value falls below this."
    )
    correction: Literal["bh", "holm", "none"] = Field(
        default="bh",
        description="Correction across all monitored (device, model) pairs of one run: "
        "Benjamini–Hochberg ('bh'), Holm ('holm') or none.",
    )
    permutations: int = Field(
        default=1000,
        ge=19,
        le=100_000,
        description="Permutations of the MMD test (its p-value is at least 1 / (1 + this): keep "
        "it well above pairs / alpha, or a corrected p-value cannot fall below alpha).",
    )
    max_samples: int = Field(
        default=300,
        ge=10,
        le=5000,
        description="Embeddings per window in the MMD test (random subsample; bounds the cost).",
    )
    severity: Literal["info", "warning", "error", "critical"] = Field(
        default="warning", description="Severity of drift alerts."
    )
    keep_days: int = Field(default=90, ge=1, description="Drift snapshots are kept this long.")

    @model_validator(mode="after")
    def _dates(self) -> DriftConfig:
        if self.reference == "dates":
            if self.reference_from is None or self.reference_to is None:
                raise ValueError("reference 'dates' needs reference_from and reference_to")
            if self.reference_from >= self.reference_to:
                raise ValueError("reference_from must be before reference_to")
        return self
