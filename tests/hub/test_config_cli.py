"""Configuration (typed, line numbers, env overrides, generated reference) and the hub commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hub_data import results
from hub_support import Broker, free_port, wait_for
from hub_testing import JWT_SECRET, feed

from waferscope.hub.config_loader import ConfigError, load_config
from waferscope.hub.config_reference import reference_markdown
from waferscope.protocols.formats import read_maps

REPO = Path(__file__).resolve().parents[2]
WAFERSCOPE = str(Path(sys.executable).parent / "waferscope")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [WAFERSCOPE, "hub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_three_lines_are_enough(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('data_dir = "state"\n[mqtt]\nhost = "broker.fab3.example"\n')
    cfg = load_config(path, environ={}).config
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.database_url == f"sqlite:///{tmp_path / 'state' / 'hub.sqlite'}"
    assert cfg.blob_path == tmp_path / "state" / "blobs"
    assert cfg.mqtt.host == "broker.fab3.example" and cfg.subscription_group is None
    assert (
        cfg.model_copy(
            update={"ingest": cfg.ingest.model_copy(update={"workers": 3})}
        ).subscription_group
        == "waferscope-hub"
    )


def test_problems_name_their_line(tmp_path: Path) -> None:
    toml = tmp_path / "hub.toml"
    toml.write_text(
        'data_dir = "state"\n[mqtt]\nport = 70000\n[review]\nthreshold = 0.5\ncolour = "red"\n'
        '[[notify.webhooks]]\nname = "a"\nurl = "http://x"\nmin_severity = "loud"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(toml, environ={})
    shown = [str(p) for p in exc.value.problems]
    assert f"{toml}:3: mqtt.port: Input should be less than or equal to 65535 (got 70000)" in shown
    assert f"{toml}:6: review.colour: unknown key (not a setting of this section)" in shown
    assert any(s.startswith(f"{toml}:10: notify.webhooks.0.min_severity") for s in shown)
    yaml = tmp_path / "hub.yaml"
    yaml.write_text("database:\n  url: sqlite:///x.db\n  pool_size: -1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(yaml, environ={})
    assert str(exc.value.problems[0]).startswith(f"{yaml}:3: database.pool_size")
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(broken, environ={})
    assert "not valid TOML" in str(exc.value)


def test_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("mqtt:\n  port: 1883\n")
    env = {
        "WAFERSCOPE_HUB__MQTT__PORT": "8883",
        "WAFERSCOPE_HUB__MQTT__TLS__ENABLED": "true",
        "WAFERSCOPE_HUB__NOTIFY__WEBHOOKS__0__NAME": "ops",
        "WAFERSCOPE_HUB__NOTIFY__WEBHOOKS__0__URL": "https://hooks.example/x",
        "WAFERSCOPE_HUB__DATABASE__URL": "postgresql://hub@db/waferscope",
    }
    loaded = load_config(path, environ=env)
    cfg = loaded.config
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls.enabled
    assert cfg.notify.webhooks[0].url == "https://hooks.example/x"
    assert cfg.database_url == "postgresql+psycopg://hub@db/waferscope"
    assert len(loaded.overrides) == 5
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={"WAFERSCOPE_HUB__INGEST__BATCH_MAX": "lots"})
    assert str(exc.value.problems[0]).startswith("WAFERSCOPE_HUB__INGEST__BATCH_MAX: ingest")


def test_validate_config_command(tmp_path: Path) -> None:
    good = tmp_path / "hub.toml"
    good.write_text("[mqtt]\nhost = 'broker'\n")
    res = run_cli("validate-config", str(good))
    assert res.returncode == 0 and "ok" in res.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nbatch_max = 0\n")
    res = run_cli("validate-config", str(bad))
    assert res.returncode == 1
    assert res.stderr.strip().startswith(f"{bad}:2: ingest.batch_max")


def test_reference_doc_is_generated_and_fresh() -> None:
    text = reference_markdown()
    for key in (
        "`url`",
        "`shared_group`",
        "`batch_max`",
        "`threshold`",
        "`jwt_secret`",
        "`[notify.mes]`",
        "`[[notify.webhooks]]`",
    ):
        assert key in text
    doc = REPO / "docs" / "hub-config.md"
    assert doc.read_text(encoding="utf-8") == text, (
        "docs/hub-config.md is stale: waferscope hub config-reference > docs/hub-config.md"
    )


def test_users_tokens_and_export_commands(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "state"\n[auth]\njwt_secret = "{JWT_SECRET}"\n')
    assert run_cli("migrate", "--config", str(config)).returncode == 0
    res = run_cli(
        "user",
        "add",
        "reviewer1",
        "--role",
        "reviewer",
        "--config",
        str(config),
        env={"WAFERSCOPE_HUB_PASSWORD": "correct horse"},
    )
    assert res.returncode == 0, res.stderr
    assert (
        run_cli(
            "user",
            "add",
            "reviewer1",
            "--config",
            str(config),
            env={"WAFERSCOPE_HUB_PASSWORD": "correct horse"},
        ).returncode
        == 1
    )
    listed = run_cli("user", "list", "--config", str(config)).stdout
    assert "reviewer1\treviewer\tactive" in listed
    token = run_cli("user", "token", "reviewer1", "--config", str(config)).stdout.strip()
    assert token.count(".") == 2

    from waferscope.hub.app import Hub
    from waferscope.hub.store.review import submit_review

    hub = Hub(load_config(config, environ={}).config)
    msgs = list(results(data_dir, 5))
    feed(hub, msgs)
    assert hub.tokens.verify(token) == ("reviewer1", "reviewer")
    with hub.db.session(write=True) as s:
        for m in msgs[:3]:
            submit_review(s, m.result_id, reviewer="reviewer1", pattern="Loc")
    hub.stop()
    out = tmp_path / "labels.npz"
    res = run_cli("export-labels", "--output", str(out), "--config", str(config))
    assert res.returncode == 0, res.stderr
    assert "3 labelled wafers (Loc 3)" in res.stdout
    wafers = list(read_maps(out))
    assert [w.labels for w in wafers] == [("Loc",)] * 3
    assert set(np.load(out)["result_id"]) == {m.result_id for m in msgs[:3]}


def test_hub_run_serves_and_stops(tmp_path: Path, broker: Broker) -> None:
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        f'data_dir = "state"\n[mqtt]\nport = {broker.port}\n[http]\nport = {port}\n'
        f'[auth]\njwt_secret = "{JWT_SECRET}"\n[ingest]\nworkers = 2\n'
    )
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [WAFERSCOPE, "hub", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return bool(json.load(r)["ready"])
            except OSError:
                return False

        wait_for(ready, 60, interval=0.3, what="/readyz")
        text = log.read_text(errors="replace")
        wait_for(lambda: text.count("subscribing") >= 1, 10)
        assert "2 ingest worker(s)" in text
        wait_for(lambda: "[hub w1]" in log.read_text(errors="replace"), 30, what="worker 1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("name", ["hub.toml", "hub-production.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    loaded = load_config(REPO / "hub" / "examples" / name, environ={})
    assert loaded.config.mqtt.host
