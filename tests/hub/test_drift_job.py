"""The drift job on SQLite and PostgreSQL: a steady and a drifting device from real WM-811K maps,
snapshots, one alert per device/model/kind, metrics at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from drift_data import DRIFT, WINDOW, stream
from hub_data import T0
from hub_testing import feed, hub_config
from pydantic import ValidationError
from sqlalchemy import func, select

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import AlertRow, DriftSnapshot
from waferscope.hub.drift.config import DriftConfig
from waferscope.hub.store import alerts as alert_store


@pytest.fixture
def drift_hub(tmp_path: Path, db_url: str, data_dir: Path) -> Iterator[Hub]:
    hub = Hub(hub_config(tmp_path, db_url, drift=DRIFT))
    feed(hub, stream(data_dir, "edge-steady", drifting=False, offset=0))
    feed(hub, stream(data_dir, "edge-drift", drifting=True, offset=2000))
    feed(hub, stream(data_dir, "edge-new", drifting=False, offset=4000)[:30])
    yield hub
    hub.stop()


def count(hub: Hub, model: type) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_drift_is_found_where_the_stream_moved_and_alerted_once(drift_hub: Hub) -> None:
    rows = {r["device_id"]: r for r in drift_hub.drift.run_once()}
    assert set(rows) == {"edge-steady", "edge-drift", "edge-new"}
    steady, drifting, new = rows["edge-steady"], rows["edge-drift"], rows["edge-new"]
    assert new["status"] == "insufficient"
    assert new["reference_n"] == 30
    assert new.get("class_p") is None
    assert steady["status"] == "ok"
    assert steady["class_p_adjusted"] >= 0.01
    assert steady["mmd_p_adjusted"] >= 0.01
    assert (steady["reference_n"], steady["current_n"]) == (WINDOW, WINDOW)
    assert drifting["status"] == "drift"
    assert drifting["class_p_adjusted"] < 1e-6
    assert drifting["mmd_p_adjusted"] < 0.01
    assert drifting["psi"] > 0.25
    assert drifting["class_p_adjusted"] >= drifting["class_p"]  # corrected across pairs
    assert drifting["current_start"] > drifting["reference_end"]

    with drift_hub.db.session() as s:
        raised = list(s.scalars(select(AlertRow).order_by(AlertRow.rule_id)))
    assert [(a.rule_id, a.device_id) for a in raised] == [
        ("drift-classes", "edge-drift"),
        ("drift-embedding", "edge-drift"),
    ]
    assert "PSI" in raised[0].message and "/ui/drift" in raised[0].message

    # the next run stores new snapshots but raises nothing while those alerts are open
    drift_hub.drift.run_once()
    assert count(drift_hub, AlertRow) == 2
    assert count(drift_hub, DriftSnapshot) == 6
    with drift_hub.db.session(write=True) as s:
        assert alert_store.acknowledge(s, raised[0].alert_id, user="reviewer")
    drift_hub.drift.run_once()
    assert count(drift_hub, AlertRow) == 3  # the class drift alerted again once acknowledged

    text = drift_hub.metrics.render().decode()
    assert (
        'waferscope_hub_drift_detected{device="edge-drift",model_version="2026.03.1"} 1.0' in text
    )
    assert (
        'waferscope_hub_drift_detected{device="edge-steady",model_version="2026.03.1"} 0.0' in text
    )
    assert 'waferscope_hub_drift_p_value{device="edge-drift",kind="embedding"' in text
    assert 'waferscope_hub_drift_psi{device="edge-steady"' in text
    assert 'waferscope_hub_rule_alerts_total{rule="drift-classes"} 2.0' in text


def test_a_date_range_reference_and_a_time_bounded_current_window(
    tmp_path: Path, sqlite_url: str, data_dir: Path
) -> None:
    drift = DRIFT | {
        "reference": "dates",
        "reference_from": T0.replace(tzinfo=None),
        "reference_to": (T0 + timedelta(seconds=20 * (WINDOW - 1))).replace(tzinfo=None),
        "current_window_s": 3600,
    }
    hub = Hub(hub_config(tmp_path, sqlite_url, drift=drift))
    try:
        feed(hub, stream(data_dir, "edge-drift", drifting=True, offset=2000))
        now = (T0 + timedelta(seconds=20 * 2 * WINDOW)).replace(tzinfo=None)
        (row,) = hub.drift.run_once(now=now)
        assert row["reference_n"] == WINDOW
        # the last hour holds 180 results at 20 s, capped at current_size
        assert row["current_n"] == WINDOW
        assert row["status"] == "drift"
        (late,) = hub.drift.run_once(now=now + timedelta(hours=2))
        assert late["current_n"] == 0
        assert late["status"] == "insufficient"
    finally:
        hub.stop()


def test_config_refuses_a_date_reference_without_dates() -> None:
    with pytest.raises(ValidationError, match="reference_from"):
        DriftConfig(reference="dates")


def test_drift_command_runs_the_job_once(tmp_path: Path, data_dir: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "hub.toml"
    config.write_text(
        'data_dir = "state"\n[drift]\n' + "".join(f"{k} = {v}\n" for k, v in DRIFT.items())
    )
    hub = Hub(hub_config(tmp_path, f"sqlite:///{tmp_path / 'state' / 'hub.sqlite'}"))
    feed(hub, stream(data_dir, "edge-drift", drifting=True, offset=2000))
    hub.stop()
    waferscope = Path(sys.executable).with_name("waferscope")
    res = subprocess.run(
        [str(waferscope), "hub", "drift", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "edge-drift / 2026.03.1: drift (reference 150, current 150; class p" in res.stdout
    assert "1 device/model pairs" in res.stdout
