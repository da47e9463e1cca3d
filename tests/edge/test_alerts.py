"""Alert rules: per-wafer rules fire per wafer, condition rules once per condition."""

from __future__ import annotations

from pydantic import TypeAdapter

from waferscope.edge.alerts import AlertEngine
from waferscope.edge.config import AlertRule
from waferscope.protocols import messages
from waferscope.protocols.pb import common_pb2, result_pb2

RULES = TypeAdapter(list[AlertRule]).validate_python(
    [
        {
            "kind": "pattern",
            "id": "crit",
            "patterns": ["Near-full"],
            "severity": "critical",
            "min_confidence": 0.5,
        },
        {"kind": "pattern_repeat", "id": "rep", "n": 3, "m": 5},
        {"kind": "fail_density", "id": "dens", "threshold": 0.5},
        {"kind": "low_confidence_streak", "id": "low", "n": 3},
        {"kind": "parse_failure", "id": "parse"},
    ]
)


def wafer(
    pattern: str, *, tester: str = "T1", conf: float = 0.9, fails: int = 10, review: bool = False
) -> result_pb2.WaferResult:
    r = result_pb2.WaferResult(
        result_id=messages.new_message_id(),
        device_id="e",
        confidence=conf,
        die_count=100,
        fail_count=fails,
    )
    r.pattern.name = pattern
    r.wafer.tester_id = tester
    if review:
        r.review_required = True
        r.review_reason = result_pb2.REVIEW_REASON_LOW_CONFIDENCE
    return r


def fired(engine: AlertEngine, r: result_pb2.WaferResult) -> list[str]:
    alerts = engine.on_result(r)
    for a in alerts:
        messages.encode(a)  # every alert is a valid message
    return [a.rule_id for a in alerts]


def test_critical_pattern_and_fail_density_fire_per_wafer() -> None:
    e = AlertEngine(RULES, "edge-01")
    assert fired(e, wafer("Near-full", fails=80)) == ["crit", "dens"]
    assert fired(e, wafer("Near-full", conf=0.4)) == []  # below the rule's confidence
    alerts = e.on_result(wafer("Near-full"))
    assert [a.rule_id for a in alerts] == ["rep", "crit"]  # the third Near-full also repeats
    alert = alerts[1]
    assert alert.severity == common_pb2.SEVERITY_CRITICAL and alert.pattern == "Near-full"


def test_n_of_m_fires_once_per_condition_and_per_tester() -> None:
    e = AlertEngine(RULES, "edge-01")
    seq = ["Scratch", "none", "Scratch", "Loc", "Scratch"]
    out = [fired(e, wafer(p)) for p in seq]
    assert out == [[], [], [], [], ["rep"]]
    assert fired(e, wafer("Scratch")) == []  # still true: no repeat
    assert fired(e, wafer("Scratch", tester="T2")) == []  # another tester has its own window
    for p in ["none", "none", "none", "none"]:
        fired(e, wafer(p))  # clears
    out = [fired(e, wafer("Scratch")) for _ in range(3)]
    assert out == [[], [], ["rep"]]
    alert = e.on_result(wafer("none"))  # no alert for 'none'
    assert alert == []


def test_low_confidence_streak_and_parse_failures() -> None:
    e = AlertEngine(RULES, "edge-01")
    varied = ["Loc", "Donut", "Center", "Random", "Scratch", "Edge-Loc", "none"]
    out = [fired(e, wafer(p, review=True)) for p in varied[:4]]
    assert out == [[], [], ["low"], []]
    fired(e, wafer("none"))
    assert [fired(e, wafer(p, review=True)) for p in varied[4:]][-1] == ["low"]
    [a] = e.on_rejected_file("x.stdf", "truncated", "x.stdf: byte 1500: truncated", "T1")
    assert a.rule_kind == "parse_failure" and "truncated" in a.title


def test_seeded_state_does_not_repeat_after_restart() -> None:
    e = AlertEngine(RULES, "edge-01")
    e.seed(("T1", "Edge-Ring", messages.new_message_id(), False) for _ in range(3))
    assert fired(e, wafer("Edge-Ring")) == []
