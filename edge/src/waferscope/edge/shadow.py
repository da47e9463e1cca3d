"""A candidate engine on trial: it classifies live wafers beside the active one, never for keeps.

:class:`ShadowTrial` runs the candidate on the batch the active engine has just classified and
records agreement of the pattern classes, both engines' top-class confidence histograms, the
candidate's latency and its run-time failures; :meth:`ShadowTrial.verdict` says when the trial is
over and whether the candidate may take over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from waferscope.edge.release_config import ReleaseConfig
from waferscope.protocols.encoding import encode_dense
from waferscope.protocols.inference import Classification, Model
from waferscope.protocols.pb.release_pb2 import ShadowReport

BINS = 10


def _histogram(values: Sequence[float]) -> np.ndarray:
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=BINS, range=(0.0, 1.0))
    return counts.astype(np.int64)


@dataclass
class ShadowTrial:
    """What one candidate release did in shadow so far."""

    version: int
    candidate: Model
    config: ReleaseConfig
    started: float = field(default_factory=time.monotonic)
    wafers: int = 0
    agreements: int = 0
    errors: int = 0
    last_error: str = ""
    active_ms: float = 0.0
    candidate_ms: float = 0.0
    active_hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    candidate_hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def observe(self, done: Sequence[Classification]) -> None:
        """Run the candidate on the wafers the active engine classified in ``done``."""
        if not done:
            return
        bundle = self.candidate.bundle
        x = np.stack(
            [
                c.prepared.tensor
                if c.prepared.encoding == bundle.encoding
                else encode_dense(c.prepared.states, bundle.encoding)
                for c in done
            ]
        )
        began = time.perf_counter()
        try:
            logits = self.candidate.infer(x).pattern_logits
        except Exception as exc:  # the backend's own error types: a run-time failure
            self.errors += 1
            self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        self.candidate_ms += (time.perf_counter() - began) * 1000.0
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        top = probs.argmax(axis=1)
        names = [bundle.pattern_classes[int(i)] for i in top]
        self.wafers += len(done)
        self.agreements += sum(n == c.pattern.name for n, c in zip(names, done, strict=True))
        self.active_hist += _histogram([c.confidence for c in done])
        self.candidate_hist += _histogram(probs.max(axis=1).tolist())
        self.active_ms += sum(c.prepared.times.infer_ms for c in done)

    @property
    def agreement(self) -> float:
        return self.agreements / self.wafers if self.wafers else 0.0

    @property
    def candidate_latency_ms(self) -> float:
        return self.candidate_ms / self.wafers if self.wafers else 0.0

    def verdict(self) -> tuple[bool, str] | None:
        """None while the trial goes on; else (take over?, reason)."""
        cfg = self.config
        if self.errors > cfg.max_shadow_errors:
            return False, f"{self.errors} run-time failure(s) in shadow: {self.last_error}"
        timed_out = time.monotonic() - self.started >= cfg.shadow_max_seconds
        if self.wafers < cfg.shadow_wafers and not (timed_out and self.wafers):
            return None
        if self.agreement < cfg.min_agreement:
            return False, (
                f"agreement {self.agreement:.3f} with the active engine over {self.wafers} "
                f"wafers is below {cfg.min_agreement}"
            )
        if self.candidate_latency_ms > cfg.latency_budget_ms:
            return False, (
                f"mean latency {self.candidate_latency_ms:.1f} ms per wafer is over the "
                f"{cfg.latency_budget_ms} ms budget"
            )
        return True, f"agreement {self.agreement:.3f} over {self.wafers} wafers"

    def report(self, device_id: str, active: Model, state: str, reason: str) -> ShadowReport:
        msg = ShadowReport(
            schema_version=1,
            report_id=str(uuid.uuid4()),
            device_id=device_id,
            release_version=self.version,
            candidate_model_version=self.candidate.version,
            active_model_version=active.version,
            wafers=self.wafers,
            agreements=self.agreements,
            errors=self.errors,
            active_confidence_histogram=self.active_hist.tolist(),
            candidate_confidence_histogram=self.candidate_hist.tolist(),
            active_mean_latency_ms=self.active_ms / self.wafers if self.wafers else 0.0,
            candidate_mean_latency_ms=self.candidate_latency_ms,
            state=state,
            reason=reason,
        )
        msg.reported_time.GetCurrentTime()
        return msg
