"""Rollout planning without I/O: waves, gates, the SPRT and the manual actions."""

from __future__ import annotations

import math

import pytest

from waferscope.hub.rollout import plan
from waferscope.hub.rollout.plan import DeviceFigures, GateSettings, WaveSpec
from waferscope.hub.rollout.sprt import SprtSettingsError, sprt


def test_waves_canary_then_cumulative_percentages() -> None:
    devices = [f"e{i}" for i in range(10)]
    waves = plan.assign_waves(
        devices, [WaveSpec(canary=1), WaveSpec(percent=50), WaveSpec(percent=100)]
    )
    by_wave = [sorted(d for d, w in waves.items() if w == i) for i in range(3)]
    assert by_wave == [["e0"], ["e1", "e2", "e3", "e4"], ["e5", "e6", "e7", "e8", "e9"]]
    named = plan.assign_waves(devices[:3], [WaveSpec(devices=["e2"]), WaveSpec(percent=34)])
    assert named == {"e2": 0, "e0": 1, "e1": 1}  # 34% of 3 = 2 devices after the canary ...
    short = plan.assign_waves(devices[:4], [WaveSpec(canary=1), WaveSpec(percent=25)])
    assert short == {"e0": 0, "e1": 1, "e2": 1, "e3": 1}  # ... and the rest join the last wave


def test_bad_plans_are_refused() -> None:
    with pytest.raises(plan.RolloutError, match="empty"):
        plan.assign_waves([], [WaveSpec(canary=1)])
    with pytest.raises(plan.RolloutError, match="outside the group"):
        plan.assign_waves(["a"], [WaveSpec(devices=["b"])])
    with pytest.raises(plan.RolloutError, match="exactly one"):
        plan.parse_request({"release_id": "x", "waves": [{"canary": 1, "percent": 5}]})
    with pytest.raises(plan.RolloutError, match="max_failure_share"):
        plan.parse_request({"release_id": "x", "gates": {"max_failure_share": 2}})


def _good(n: int = 3) -> list[DeviceFigures]:
    return [
        DeviceFigures(
            plan.DONE,
            wafers=50,
            agreements=49,
            current_confidence=0.9,
            new_confidence=0.91,
            new_latency_ms=4.0,
        )
        for _ in range(n)
    ]


def test_gates_pass_and_each_one_can_fail() -> None:
    gates = GateSettings(max_failure_share=0.34)
    ok = plan.evaluate_gates(_good(), gates)
    assert ok.passed and ok.figures["shadow_agreement"] == 0.98, ok.figures
    assert ok.figures["confidence_shift"] == pytest.approx(0.01)

    failing = _good()
    failing[0].state = plan.DEVICE_FAILED
    failing[1].state = plan.DEVICE_FAILED
    out = plan.evaluate_gates(failing, gates)
    assert not out.passed and "failure share 67% > 34% (2 of 3)" in out.reason()

    low = _good()
    for d in low:
        d.agreements = 30
    assert "shadow agreement 60.0% < 90.0%" in plan.evaluate_gates(low, gates).reason()

    unsure = _good()
    for d in unsure:
        d.new_confidence = 0.5
    assert "confidence shift -0.400" in plan.evaluate_gates(unsure, gates).reason()

    slow = _good()
    slow[2].new_latency_ms = 900.0
    assert "latency p95 900.0 ms" in plan.evaluate_gates(slow, gates).reason()

    worse = [(True, False)] * 12  # the current engine right, the new one wrong, 12 times
    out = plan.evaluate_gates(_good(), gates, worse)
    assert not out.passed and out.figures["sprt"]["decision"] == "worse"


def test_histogram_mean_uses_bin_centres() -> None:
    assert plan.histogram_mean([0] * 10) is None
    assert plan.histogram_mean([1] + [0] * 9) == pytest.approx(0.05)
    assert plan.histogram_mean([0] * 9 + [3]) == pytest.approx(0.95)


def test_sprt_on_known_sequences() -> None:
    # alpha 0.05, beta 0.10, theta0 0.35, theta1 0.5: A = ln(18) = 2.890, B = ln(0.10 / 0.95)
    up = math.log(0.5 / 0.35)  # +0.357 per discordant pair the new engine wins
    down = math.log(0.5 / 0.65)  # -0.262 per pair the current engine wins
    # 9 wins for the new engine: 9 * 0.357 = 3.21 >= A after the 9th (8 * 0.357 = 2.85 < A)
    r = sprt([(False, True)] * 20)
    assert r.decision == "better" and r.pairs == 9 and r.llr == pytest.approx(9 * up)
    # 9 losses: 9 * -0.262 = -2.36 <= B = -2.251 (8 * -0.262 = -2.10 > B)
    r = sprt([(True, False)] * 20)
    assert r.decision == "worse" and r.pairs == 9 and r.llr == pytest.approx(9 * down)
    # concordant pairs carry nothing; alternating wins and losses stay undecided
    r = sprt([(True, True), (False, False)] * 50 + [(True, False), (False, True)] * 3)
    assert r.decision == "undecided" and r.pairs == 6
    assert r.llr == pytest.approx(3 * (up + down))
    assert r.upper == pytest.approx(math.log(18)) and r.lower == pytest.approx(math.log(0.1 / 0.95))
    with pytest.raises(SprtSettingsError):
        sprt([], theta0=0.6, theta1=0.5)


def test_manual_actions_follow_the_state() -> None:
    assert plan.apply_action(plan.IN_PROGRESS, "pause") == plan.PAUSED
    assert plan.apply_action(plan.PAUSED, "resume") == plan.IN_PROGRESS
    assert plan.apply_action(plan.PAUSED, "abort") == plan.ABORTED
    assert plan.apply_action(plan.COMPLETED, "rollback") == plan.ROLLING_BACK
    with pytest.raises(plan.RolloutError, match="cannot resume a rollout that is in_progress"):
        plan.apply_action(plan.IN_PROGRESS, "resume")
    with pytest.raises(plan.RolloutError, match="cannot pause a rollout that is rolled_back"):
        plan.apply_action(plan.ROLLED_BACK, "pause")
    with pytest.raises(plan.RolloutError, match="unknown rollout action"):
        plan.apply_action(plan.PAUSED, "explode")
