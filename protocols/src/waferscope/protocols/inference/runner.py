"""The runner interface: one engine call on a batch of encoded wafers, whatever the backend.

Every backend (onnxruntime here, the edge's native TensorRT runner) returns the four outputs of
the bundle contract (:mod:`waferscope.protocols.bundle`) as float32 numpy arrays with the batch
first. One contract test suite (``tests/protocols/inference/test_runner_contract.py``) runs
against every backend present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from waferscope.protocols.bundle import BundleError
from waferscope.protocols.errors import WaferscopeError

F32 = npt.NDArray[np.float32]


class RunnerUnavailableError(WaferscopeError):
    """The backend's libraries or hardware are missing on this machine (the reason says which)."""


@dataclass(frozen=True, slots=True)
class EngineOutputs:
    pattern_logits: F32  # (N, P)
    cause_logits: F32  # (N, R)
    feature_map: F32  # (N, K, h, w)
    embedding: F32  # (N, K)

    def __len__(self) -> int:
        return int(self.pattern_logits.shape[0])

    def check(self, batch: int, patterns: int, causes: int) -> None:
        """Raise BundleError unless the shapes are the contract's for this batch and bundle."""
        n, k = self.embedding.shape if self.embedding.ndim == 2 else (-1, -1)
        problems = []
        if self.pattern_logits.shape != (batch, patterns):
            problems.append(f"pattern_logits {self.pattern_logits.shape} != {(batch, patterns)}")
        if self.cause_logits.shape != (batch, causes):
            problems.append(f"cause_logits {self.cause_logits.shape} != {(batch, causes)}")
        if n != batch:
            problems.append(f"embedding {self.embedding.shape} is not (batch, K)")
        if self.feature_map.ndim != 4 or self.feature_map.shape[:2] != (batch, k):
            problems.append(f"feature_map {self.feature_map.shape} is not (batch, {k}, h, w)")
        if problems:
            raise BundleError("engine outputs break the bundle contract: " + "; ".join(problems))


@runtime_checkable
class Runner(Protocol):
    """A loaded engine. ``run`` may be called from one thread at a time."""

    @property
    def backend(self) -> str:
        """'onnxruntime' or 'tensorrt'."""
        ...

    @property
    def provider(self) -> str:
        """What actually executes, e.g. 'CPUExecutionProvider', 'TensorRT 10.3 (sm_87)'."""
        ...

    def run(self, batch: F32) -> EngineOutputs:
        """Run a batch (N, C, S, S) float32; N may be anything from 1 to the runner's limit."""
        ...

    def close(self) -> None: ...
