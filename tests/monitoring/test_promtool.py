"""promtool on the monitoring assets: the rules and the example configuration check, the rule unit
tests pass, and every PromQL expression of the dashboard parses.

Skipped with a reason where promtool is missing (Debian package ``prometheus``; scripts/setup.sh
installs it).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from monitoring_support import DASHBOARD, PROMETHEUS_YML, RULE_TESTS, RULES


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_check(promtool: str) -> None:
    res = run(promtool, "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_example_prometheus_config_checks(promtool: str) -> None:
    res = run(promtool, "check", "config", "--syntax-only", str(PROMETHEUS_YML))
    assert res.returncode == 0, res.stdout + res.stderr
    # with the rule file it names, found next to it
    res = run(promtool, "check", "config", str(PROMETHEUS_YML))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no promtool unit tests under monitoring/prometheus/tests"
    res = run(promtool, "test", "rules", *(str(p) for p in RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (res.stdout + res.stderr).count("SUCCESS") == len(RULE_TESTS)


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by values Prometheus would see."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dash["panels"]
        for target in panel.get("targets") or []
    ]


def test_dashboard_promql_parses(promtool: str, tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert exprs
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": grafana_to_promql(expr)}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    res = run(promtool, "check", "rules", str(path))
    listing = "\n".join(f"{i}: {title}: {expr}" for i, (title, expr) in enumerate(exprs))
    assert res.returncode == 0, res.stdout + res.stderr + "\n" + listing
