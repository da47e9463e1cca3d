"""The alert rule registry: each kind's settings and behaviour found by name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from waferscope.edge import alert_rules
from waferscope.edge.alert_rules import REGISTRY, RuleBase, RuleKind, register, rule_kind_of
from waferscope.edge.alerts import AlertEngine
from waferscope.edge.config import RULE_KINDS, AlertsConfig
from waferscope.edge.config_loader import ConfigError, load_config


def test_every_kind_pairs_its_settings_with_its_behaviour() -> None:
    assert list(REGISTRY) == [
        "pattern",
        "pattern_repeat",
        "fail_density",
        "low_confidence_streak",
        "parse_failure",
    ]
    assert frozenset(REGISTRY) == RULE_KINDS
    for name, kind in REGISTRY.items():
        assert kind.settings_model.model_fields["kind"].annotation == Literal[name]
        assert kind.__module__ == alert_rules.__name__


def test_configured_rules_get_the_behaviour_of_their_kind() -> None:
    rules = AlertsConfig.model_validate(
        {
            "rules": [
                {"kind": "fail_density", "id": "dens", "threshold": 0.4},
                {"kind": "pattern_repeat", "id": "rep", "n": 2, "m": 9},
            ]
        }
    ).rules
    engine = AlertEngine(rules, "edge-01")
    made = [rule_kind_of(r, engine.make_alert) for r in rules]
    assert [type(k).__name__ for k in made] == ["FailDensityAlerts", "PatternRepeatAlerts"]
    assert made[1].history_depth == 9  # the engine keeps as many results per tester
    assert engine._history["T1"].maxlen == 9


def test_an_unknown_kind_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('device_id = "e1"\n\n[[alerts.rules]]\nkind = "sudden_silence"\nid = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    [problem] = caught.value.problems
    assert (problem.where, problem.field) == (f"{path}:3", "alerts.rules.0")
    assert "'sudden_silence'" in problem.reason
    assert all(f"'{name}'" in problem.reason for name in REGISTRY)


def test_a_name_is_registered_once() -> None:
    class Twin(RuleKind[RuleBase]):
        settings_model = RuleBase

    with pytest.raises(ValueError, match="registered twice"):
        register("pattern")(Twin)
    assert REGISTRY["pattern"] is alert_rules.PatternAlerts
