"""What a rollout is, without I/O: its waves, its gates, its states and the moves between them.

A rollout sends one release to a device group in waves — canary devices first (named ids or a
count), then cumulative percentages of the group — and after each wave weighs its gates (as
Greengrass abort criteria and hawkBit error thresholds): the share of devices whose install or
health check failed, the shadow agreement between the new and the current engine, the shift in
mean top-class confidence, the candidates' latency, and, where reviewers labelled shadowed wafers,
a sequential test of accuracy (:mod:`.sprt`). A wave that passes opens the next; one that fails
rolls back every device already moved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from waferscope.hub.rollout.sprt import sprt
from waferscope.protocols.errors import WaferscopeError


class RolloutError(WaferscopeError):
    """A rollout cannot be planned or an action does not fit its state."""


# rollout states
PENDING: Final = "pending"
IN_PROGRESS: Final = "in_progress"
PAUSED: Final = "paused"
COMPLETED: Final = "completed"
ABORTED: Final = "aborted"
ROLLING_BACK: Final = "rolling_back"
ROLLED_BACK: Final = "rolled_back"
FAILED: Final = "failed"
FINAL_STATES: Final = frozenset({COMPLETED, ABORTED, ROLLED_BACK, FAILED})

# device states within a rollout
WAITING: Final = "waiting"  # its wave has not opened
SENT: Final = "sent"  # install command published, nothing heard yet
INSTALLING: Final = "installing"  # received / downloading
SHADOWING: Final = "shadowing"  # installed, on trial beside the current engine
DONE: Final = "done"  # the release is the device's active engine
DEVICE_FAILED: Final = "failed"  # refused, failed, expired, or rolled back by the edge's trial
ROLLBACK_SENT: Final = "rollback_sent"
DEVICE_ROLLED_BACK: Final = "rolled_back"
MOVED: Final = frozenset({SHADOWING, DONE})  # running the release (in shadow or for keeps)
SETTLED: Final = frozenset({DONE, DEVICE_FAILED})


class WaveSpec(BaseModel):
    """One wave: named canary devices, a count of canary devices, or a cumulative percentage."""

    model_config = ConfigDict(extra="forbid")
    devices: list[str] | None = None
    canary: int | None = Field(default=None, ge=1)
    percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> WaveSpec:
        if sum(v is not None for v in (self.devices, self.canary, self.percent)) != 1:
            raise ValueError("a wave names exactly one of devices, canary, percent")
        return self


class GateSettings(BaseModel):
    """The gates a wave must pass (each figure of the wave against its threshold)."""

    model_config = ConfigDict(extra="forbid")
    max_failure_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of the wave's devices allowed to fail."
    )
    min_shadow_agreement: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Pattern agreement new vs current over shadowed wafers.",
    )
    max_confidence_shift: float = Field(
        default=0.15, ge=0, le=1, description="Largest |mean confidence new − current|."
    )
    latency_budget_ms: float = Field(
        default=250.0,
        gt=0,
        description="p95 over the wave's devices of the candidate's mean latency.",
    )
    sprt_alpha: float = Field(default=0.05, gt=0, lt=1)
    sprt_beta: float = Field(default=0.10, gt=0, lt=1)
    sprt_theta0: float = Field(default=0.35, gt=0, lt=1)
    sprt_theta1: float = Field(default=0.5, gt=0, lt=1)
    wave_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="After this long a wave is judged on the devices that answered; the others "
        "get the release when they return.",
    )


class RolloutRequest(BaseModel):
    """What an engineer asks for: a release, a device group, waves and gates."""

    model_config = ConfigDict(extra="forbid")
    release_id: str
    devices: list[str] | None = None  # the group: these ids ...
    site: str | None = None  # ... or every device of a site; neither: every device
    waves: list[WaveSpec] = Field(
        default_factory=lambda: [WaveSpec(canary=1), WaveSpec(percent=50), WaveSpec(percent=100)]
    )
    gates: GateSettings = Field(default_factory=GateSettings)


def parse_request(doc: Any) -> RolloutRequest:
    try:
        return RolloutRequest.model_validate(doc)
    except ValidationError as exc:
        raise RolloutError(
            f"rollout request: {exc.errors()[0]['msg']} at "
            f"{'.'.join(map(str, exc.errors()[0]['loc']))}"
        ) from None


def assign_waves(devices: Sequence[str], waves: Sequence[WaveSpec]) -> dict[str, int]:
    """Device id → wave index. Canary devices first; percentages are cumulative shares of the
    group; devices no wave reaches join the last one."""
    group = sorted(dict.fromkeys(devices))
    if not group:
        raise RolloutError("the device group is empty")
    if not waves:
        raise RolloutError("a rollout needs at least one wave")
    left = list(group)
    out: dict[str, int] = {}
    for index, wave in enumerate(waves):
        if wave.devices is not None:
            unknown = sorted(set(wave.devices) - set(group))
            if unknown:
                raise RolloutError(f"wave {index + 1} names devices outside the group: {unknown}")
            chosen = [d for d in left if d in set(wave.devices)]
        elif wave.canary is not None:
            chosen = left[: wave.canary]
        else:
            assert wave.percent is not None
            target = math.ceil(len(group) * wave.percent / 100)
            chosen = left[: max(0, target - len(out))]
        for d in chosen:
            out[d] = index
        left = [d for d in left if d not in out]
    for d in left:
        out[d] = len(waves) - 1
    return out


# --------------------------------------------------------------------------- gates
@dataclass
class DeviceFigures:
    """What one device of a wave reported (its last shadow report, its state)."""

    state: str
    wafers: int = 0
    agreements: int = 0
    current_confidence: float | None = None
    new_confidence: float | None = None
    new_latency_ms: float | None = None


@dataclass
class GateOutcome:
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    failed_gates: list[str] = field(default_factory=list)

    def reason(self) -> str:
        return "; ".join(self.failed_gates) or "every gate passed"


def histogram_mean(counts: Sequence[int]) -> float | None:
    """Mean of a 10-bin confidence histogram over [0, 1] (bin centres); None when empty."""
    total = sum(counts)
    if not total:
        return None
    width = 1.0 / len(counts)
    return sum(c * (i + 0.5) * width for i, c in enumerate(counts)) / total


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def evaluate_gates(
    devices: Sequence[DeviceFigures],
    gates: GateSettings,
    labelled: Iterable[tuple[bool, bool]] = (),
) -> GateOutcome:
    """Judge one wave from its settled devices' figures and any labelled shadow pairs."""
    out = GateOutcome(True)
    n = len(devices)
    failed = sum(d.state == DEVICE_FAILED for d in devices)
    share = failed / n if n else 0.0
    out.figures["devices"] = n
    out.figures["failure_share"] = round(share, 4)
    if share > gates.max_failure_share:
        out.failed_gates.append(
            f"failure share {share:.0%} > {gates.max_failure_share:.0%} ({failed} of {n})"
        )
    wafers = sum(d.wafers for d in devices)
    if wafers:
        agreement = sum(d.agreements for d in devices) / wafers
        out.figures["shadow_wafers"] = wafers
        out.figures["shadow_agreement"] = round(agreement, 4)
        if agreement < gates.min_shadow_agreement:
            out.failed_gates.append(
                f"shadow agreement {agreement:.1%} < {gates.min_shadow_agreement:.1%}"
            )
    shifts = [
        (d.new_confidence - d.current_confidence) * d.wafers
        for d in devices
        if d.new_confidence is not None and d.current_confidence is not None and d.wafers
    ]
    if shifts:
        shift = sum(shifts) / wafers
        out.figures["confidence_shift"] = round(shift, 4)
        if abs(shift) > gates.max_confidence_shift:
            out.failed_gates.append(
                f"confidence shift {shift:+.3f} beyond ±{gates.max_confidence_shift}"
            )
    latencies = [d.new_latency_ms for d in devices if d.new_latency_ms]
    if latencies:
        value = p95(latencies)
        out.figures["latency_p95_ms"] = round(value, 2)
        if value > gates.latency_budget_ms:
            out.failed_gates.append(f"latency p95 {value:.1f} ms > {gates.latency_budget_ms} ms")
    pairs = list(labelled)
    if pairs:
        test = sprt(
            pairs,
            alpha=gates.sprt_alpha,
            beta=gates.sprt_beta,
            theta0=gates.sprt_theta0,
            theta1=gates.sprt_theta1,
        )
        out.figures["sprt"] = {
            "decision": test.decision,
            "llr": round(test.llr, 3),
            "pairs": test.pairs,
        }
        if test.decision == "worse":
            out.failed_gates.append(f"SPRT: the new engine is less accurate ({test.pairs} pairs)")
    out.passed = not out.failed_gates
    return out


# --------------------------------------------------------------------------- actions
Action = Literal["pause", "resume", "abort", "rollback"]
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "pause": frozenset({PENDING, IN_PROGRESS}),
    "resume": frozenset({PAUSED}),
    "abort": frozenset({PENDING, IN_PROGRESS, PAUSED}),
    "rollback": frozenset({PENDING, IN_PROGRESS, PAUSED, COMPLETED, ABORTED}),
}
_RESULT: Final[dict[str, str]] = {
    "pause": PAUSED,
    "resume": IN_PROGRESS,
    "abort": ABORTED,
    "rollback": ROLLING_BACK,
}


def apply_action(state: str, action: str) -> str:
    """The state after a manual action; RolloutError when the action does not fit."""
    allowed = _ALLOWED.get(action)
    if allowed is None:
        raise RolloutError(f"unknown rollout action {action!r} (one of {sorted(_ALLOWED)})")
    if state not in allowed:
        raise RolloutError(f"cannot {action} a rollout that is {state}")
    return _RESULT[action]
