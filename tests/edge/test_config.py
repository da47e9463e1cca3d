"""Configuration: three lines work, unknown keys and bad values are named with their line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from waferscope.edge.config import EdgeConfig, PatternRepeatRule
from waferscope.edge.config_loader import ConfigError, load_config
from waferscope.edge.config_reference import reference_markdown
from waferscope.edge.engine import pipeline_settings

WAFERSCOPE = str(Path(sys.executable).parent / "waferscope")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_three_lines_are_a_working_config(tmp_path: Path) -> None:
    path = write(tmp_path, "edge.toml", 'device_id = "prober-07"\n[mqtt]\nhost = "broker.local"\n')
    cfg = load_config(path, environ={}).config
    assert cfg.device_id == "prober-07"
    assert cfg.mqtt.host == "broker.local" and cfg.mqtt.port == 1883
    assert cfg.data_dir == tmp_path / "waferscope-edge-data"
    assert cfg.ingest.hot_folder.path == cfg.data_dir / "incoming"
    assert cfg.ingest.hot_folder.done_dir == cfg.data_dir / "done"
    assert cfg.store.path == cfg.data_dir / "edge.sqlite"
    assert any(isinstance(r, PatternRepeatRule) for r in cfg.alerts.rules)


def test_yaml_is_the_same_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "edge.yaml",
        "device_id: prober-07\nreview:\n  class_thresholds: {Scratch: 0.8}\n"
        "alerts:\n  rules:\n"
        "    - {kind: pattern, id: crit, patterns: [Near-full], severity: critical}\n",
    )
    cfg = load_config(path, environ={}).config
    settings = pipeline_settings(cfg.model, cfg.review)
    assert settings.threshold_for("Scratch") == 0.8
    assert settings.threshold_for("Loc") == 0.6
    assert settings.explain and settings.max_batch == cfg.model.max_batch
    assert cfg.alerts.rules[0].kind == "pattern"


def test_environment_overrides_are_applied_at_load(tmp_path: Path) -> None:
    path = write(tmp_path, "edge.toml", 'device_id = "a"\n[mqtt]\nport = 1883\n')
    env = {
        "WAFERSCOPE_EDGE__MQTT__PORT": "8883",
        "WAFERSCOPE_EDGE__MQTT__TLS__ENABLED": "true",
        "WAFERSCOPE_EDGE__MODEL__PROVIDERS": "[cpu]",
        "WAFERSCOPE_EDGE__DEVICE_ID": "b",
        "OTHER": "x",
    }
    loaded = load_config(path, environ=env)
    assert loaded.config.mqtt.port == 8883 and loaded.config.mqtt.tls.enabled
    assert loaded.config.model.providers == ["cpu"]
    assert loaded.config.device_id == "b"
    assert len(loaded.overrides) == 4


TOML_WITH_MISTAKES = """\
device_id = "edge-01"

[mqtt]
host = "broker"
port = 70000

[ingest.hot_folder]
settle_s = "soon"
colour = "blue"

[[alerts.rules]]
kind = "pattern"
id = "crit"
patterns = ["Near-full"]

[[alerts.rules]]
kind = "pattern_repeat"
id = "rep"
n = 6
m = 5
"""


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "edge.toml", TOML_WITH_MISTAKES)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    found = {(p.field, p.where) for p in info.value.problems}
    assert ("mqtt.port", f"{path}:5") in found
    assert ("ingest.hot_folder.settle_s", f"{path}:8") in found
    assert ("ingest.hot_folder.colour", f"{path}:9") in found
    reasons = " ".join(p.reason for p in info.value.problems)
    assert "unknown key" in reasons and "70000" in reasons
    rep = [p for p in info.value.problems if p.field == "alerts.rules.1"]
    assert rep and rep[0].where == f"{path}:16", rep  # the table the rule starts at
    assert rep[0].reason == "n must not exceed m"


def test_yaml_lines_and_env_names_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "edge.yml", "device_id: 'bad id/with slash'\npanel:\n  port: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"WAFERSCOPE_EDGE__MQTT__PORT": "many"})
    where = {p.field: p.where for p in info.value.problems}
    assert where["device_id"] == f"{path}:1"
    assert where["panel.port"] == f"{path}:3"
    assert where["mqtt.port"] == "WAFERSCOPE_EDGE__MQTT__PORT"
    assert "'/'" in str(info.value)


def test_panel_reload_options(tmp_path: Path) -> None:
    """The reload token and folders: paths from the config's folder, one token source only."""
    path = write(
        tmp_path,
        "edge.toml",
        'device_id = "a"\n[panel]\nhost = "0.0.0.0"\napi_token_file = "secrets/panel.token"\n'
        'reload_dirs = ["bundles", "/srv/bundles"]\n',
    )
    panel = load_config(path, environ={}).config.panel
    assert panel.api_token_file == tmp_path / "secrets" / "panel.token"
    assert panel.reload_dirs == [tmp_path / "bundles", Path("/srv/bundles")]
    both = write(
        tmp_path,
        "both.toml",
        'device_id = "a"\n[panel]\napi_token = "0123456789abcdef"\napi_token_file = "t"\n',
    )
    with pytest.raises(ConfigError, match="set api_token or api_token_file, not both"):
        load_config(both, environ={})
    short = write(tmp_path, "short.toml", 'device_id = "a"\n[panel]\napi_token = "abc"\n')
    with pytest.raises(ConfigError, match=r"panel\.api_token"):
        load_config(short, environ={})


def test_syntax_errors_and_missing_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"edge.toml:2: not valid TOML"):
        load_config(write(tmp_path, "edge.toml", 'device_id = "a"\nport = \n'), environ={})
    with pytest.raises(ConfigError, match="device_id: required"):
        load_config(write(tmp_path, "empty.toml", ""), environ={})
    with pytest.raises(ConfigError, match=r"use a \.toml"):
        load_config(write(tmp_path, "edge.ini", "x"), environ={})


def test_validate_config_command(tmp_path: Path) -> None:
    good = write(tmp_path, "good.toml", 'device_id = "edge-01"\n')
    proc = subprocess.run(
        [WAFERSCOPE, "edge", "validate-config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout
    bad = write(tmp_path, "bad.toml", TOML_WITH_MISTAKES)
    proc = subprocess.run(
        [WAFERSCOPE, "edge", "validate-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert f"{bad}:5: mqtt.port:" in proc.stderr


def test_reference_documents_every_field() -> None:
    text = reference_markdown()
    for name, field in EdgeConfig.model_fields.items():
        assert f"`{name}`" in text or f"[{name}]" in text
        assert field.description or field.annotation is not None
    assert "`max_inflight`" in text and "pattern_repeat" in text
    docs = Path(__file__).resolve().parents[2] / "docs" / "edge-config.md"
    if docs.exists():
        assert docs.read_text(encoding="utf-8") == text, (
            "regenerate: waferscope edge config-reference"
        )


@pytest.mark.parametrize("name", ["edge.toml", "edge.yaml", "minimal.toml"])
def test_shipped_examples_are_valid(name: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "edge" / "examples"
    cfg = load_config(examples / name, environ={}).config
    assert cfg.device_id.startswith("prober-")


def test_release_download_settings_resolve_and_read_the_token_file(tmp_path: Path) -> None:
    from waferscope.protocols.release.transfer import ReleaseTransferError

    text = (
        'device_id = "prober-07"\n[release]\nhub_ca_file = "certs/hub-ca.pem"\n'
        'hub_token_file = "secrets/hub.token"\ndownload_retries = 1\n'
    )
    cfg = load_config(write(tmp_path, "edge.toml", text), environ={}).config
    assert cfg.release.hub_ca_file == tmp_path / "certs" / "hub-ca.pem"
    with pytest.raises(ReleaseTransferError, match=r"release\.hub_token_file .*hub\.token"):
        cfg.release.fetch_options()  # no such file yet: a typed error naming the option
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hub.token").write_text("tok-0123456789abcdef\n", encoding="utf-8")
    options = cfg.release.fetch_options()
    assert options.token == "tok-0123456789abcdef" and options.retries == 1
    assert options.ca_file == tmp_path / "certs" / "hub-ca.pem"
    assert not options.allow_plain_http
    both = text + 'hub_token = "tok-0123456789abcdef"\n'
    with pytest.raises(ConfigError, match="hub_token or hub_token_file"):
        load_config(write(tmp_path, "both.toml", both), environ={})
