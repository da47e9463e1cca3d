"""The root-cause taxonomy: cause classes and the prior P(cause | pattern).

The table lives in one data file, ``resources/root_causes.toml`` (read its header: the weights
are priors and engineering assumptions, not labels). A training config may name another file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import WaferscopeError

NORMAL = "none"


class TaxonomyError(WaferscopeError):
    """The root-cause taxonomy file is unreadable or inconsistent."""


@dataclass(frozen=True, slots=True)
class Cause:
    id: str
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class Taxonomy:
    name: str
    version: str
    causes: tuple[Cause, ...]
    prior: dict[str, dict[str, float]]  # pattern -> cause id -> weight (rows sum to 1)
    sources: tuple[dict[str, str], ...]
    text: str  # the file as read, shipped in bundles

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def cause_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.causes)

    def matrix(self, patterns: Sequence[str]) -> npt.NDArray[np.float32]:
        """P(cause | pattern) as a (len(patterns), n_causes) array in head-output order."""
        missing = [p for p in patterns if p not in self.prior]
        if missing:
            raise TaxonomyError(
                f"taxonomy {self.ref} has no prior for pattern(s) {', '.join(missing)}"
            )
        out = np.zeros((len(patterns), len(self.causes)), dtype=np.float32)
        for i, pattern in enumerate(patterns):
            for j, cause in enumerate(self.cause_ids):
                out[i, j] = self.prior[pattern].get(cause, 0.0)
        return out

    def normal_row(self) -> npt.NDArray[np.float32]:
        """The prior of a map without any pattern (the ``none`` row)."""
        row: npt.NDArray[np.float32] = self.matrix([NORMAL])[0]
        return row

    def multi_label_targets(
        self, multi_hot: npt.NDArray[np.generic], patterns: Sequence[str]
    ) -> npt.NDArray[np.float32]:
        """Cause priors for multi-hot pattern labels: the mean of the rows present (``none``
        row for an all-zero label)."""
        m = self.matrix(patterns)
        hot = np.asarray(multi_hot, dtype=np.float32)
        counts = hot.sum(axis=1, keepdims=True)
        mixed = hot @ m / np.maximum(counts, 1.0)
        empty = counts[:, 0] == 0
        mixed[empty] = self.normal_row()
        out: npt.NDArray[np.float32] = mixed.astype(np.float32)
        return out


def _parse(text: str, origin: str) -> Taxonomy:
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(f"{origin}: not valid TOML: {exc}") from None
    try:
        causes = tuple(
            Cause(str(c["id"]), str(c.get("title", c["id"])), str(c.get("description", "")))
            for c in doc["causes"]
        )
        raw_prior = doc["prior"]
        name, version = str(doc["name"]), str(doc["version"])
    except (KeyError, TypeError) as exc:
        raise TaxonomyError(f"{origin}: missing or malformed entry {exc}") from None
    ids = [c.id for c in causes]
    if len(set(ids)) != len(ids) or not ids:
        raise TaxonomyError(f"{origin}: cause ids must be unique and non-empty")
    prior: dict[str, dict[str, float]] = {}
    for pattern, row in raw_prior.items():
        unknown = set(row) - set(ids)
        if unknown:
            raise TaxonomyError(f"{origin}: prior.{pattern} names unknown cause(s) {unknown}")
        weights = {k: float(v) for k, v in row.items()}
        total = sum(weights.values())
        if total <= 0 or any(v < 0 for v in weights.values()):
            raise TaxonomyError(f"{origin}: prior.{pattern} needs non-negative weights, sum > 0")
        prior[str(pattern)] = {k: v / total for k, v in weights.items()}
    sources = tuple({k: str(v) for k, v in s.items()} for s in doc.get("sources", []))
    return Taxonomy(name, version, causes, prior, sources, text)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The taxonomy in ``path``, or the built-in one."""
    if path is None:
        resource = files("waferscope.trainer").joinpath("resources/root_causes.toml")
        return _parse(resource.read_text(encoding="utf-8"), "built-in root_causes.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse(text, str(path))


def parse_taxonomy(text: str, origin: str = "taxonomy") -> Taxonomy:
    return _parse(text, origin)
