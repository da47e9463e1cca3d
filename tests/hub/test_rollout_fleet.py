"""Rollouts end to end: a real broker, the hub's rollout engine and gRPC transfer, three edge
agents with their real release managers (in this process). A good release goes canary → all
while wafers keep arriving (none lost or repeated), through a hub restart and an edge's absence;
a wave failing its gates, and an engine that disagrees in shadow, are rolled back with an alert;
a hub process SIGKILLed mid-rollout is followed by one that completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hub_testing import JWT_SECRET, add_role_users, bearer, hub_config
from litestar.testing import TestClient
from release_keys import Signer, candidate, make_signer, release_toml

sys.path.insert(0, str(Path(__file__).parents[1] / "edge"))

from edge_test_support import (
    agent_toml,
    drop,
    free_port,
    start_agent,
    wafer_bytes,
    wait_for,
)
from sample_wafers import dataset_wafers

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import AlertRow, Device, Result

pytestmark = pytest.mark.slow
DEVICES = ("edge-01", "edge-02", "edge-03")


@pytest.fixture
def keys(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys")


def _hub(tmp_path: Path, broker_port: int, transfer_port: int, keys: Signer) -> Hub:
    config = hub_config(
        tmp_path,
        mqtt={"enabled": True, "port": broker_port, "client_id": "hub-under-test"},
        releases={
            "trusted_root_keys": [str(keys.root_pub)],
            "transfer_bind": f"127.0.0.1:{transfer_port}",
            "rollout_tick_s": 0.3,
        },
    )
    hub = Hub(config)
    hub.start_background()
    return hub


def _agents(
    tmp_path: Path,
    bundle: Path,
    broker_port: int,
    keys: Signer,
    strict: str = "",
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One in-process agent per device; ``strict`` gets a latency budget no engine meets."""
    out = {}
    for i, device in enumerate(DEVICES):
        budget = {"latency_budget_ms": 0.0001} if device == strict else {}
        budget = {"shadow_wafers": 0, **(settings or {}), **budget}
        (tmp_path / device).mkdir()
        toml = agent_toml(
            tmp_path / device,
            bundle,
            broker_port,
            release_toml(keys, **budget),
            device_id=device,
            tester_id=f"T-0{i + 1}",
        )
        out[device] = start_agent(toml)
    return out


def _online(hub: Hub, n: int) -> bool:
    with hub.db.session() as s:
        return sum(d.state == "online" for d in s.query(Device)) >= n


def _rollout(client: TestClient, hub: Hub, rollout_id: str) -> dict[str, Any]:
    res = client.get(f"/api/v1/rollouts/{rollout_id}", headers=bearer(hub, "operator"))
    assert res.status_code == 200, res.text
    return dict(res.json())


def _register(client: TestClient, hub: Hub, path: Path) -> str:
    res = client.post(
        "/api/v1/releases",
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream", **bearer(hub, "engineer")},
    )
    assert res.status_code == 201, res.text
    return str(res.json()["release_id"])


@pytest.fixture
def new_release(tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer) -> Path:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    return keys.sign(new, tmp_path / "r2.wsrelease", 2)


def _stop(agents: dict[str, Any]) -> None:
    for w in agents.values():
        w.agent.stop()


def _sequences(hub: Hub, device: str) -> list[int]:
    with hub.db.session() as s:
        return sorted(r.sequence for r in s.query(Result).filter(Result.device_id == device))


def test_good_release_reaches_every_edge_through_a_hub_restart_and_an_absence(
    tmp_path: Path,
    bundle_dir: Path,
    val_npz: Path,
    keys: Signer,
    broker: Any,
    new_release: Path,
) -> None:
    transfer = free_port()
    hub = _hub(tmp_path, broker.port, transfer, keys)
    add_role_users(hub)
    agents = _agents(tmp_path, bundle_dir, broker.port, keys)
    try:
        wait_for(lambda: _online(hub, 3), 30, what="three edges online at the hub")
        agents["edge-03"].agent.stop()  # away while the rollout runs
        wafers = list(dataset_wafers(val_npz, 8, start=700))
        with TestClient(hub.web_app()) as client:
            release_id = _register(client, hub, new_release)
            res = client.post(
                "/api/v1/rollouts",
                json={
                    "release_id": release_id,
                    "waves": [{"devices": ["edge-01"]}, {"percent": 100}],
                    "gates": {"wave_timeout_s": 4},
                },
                headers=bearer(hub, "engineer"),
            )
            assert res.status_code == 201, res.text
            rollout_id = res.json()["rollout_id"]
            # wafers keep arriving on the edges that swap engines
            for i, wafer in enumerate(wafers):
                for device in ("edge-01", "edge-02"):
                    folder = agents[device].config.ingest.hot_folder.path
                    drop(folder, f"w{i:02d}.xml", wafer_bytes(wafer))
            assert [(d["device_id"], d["wave"]) for d in res.json()["devices"]] == [
                ("edge-01", 1),
                ("edge-02", 2),
                ("edge-03", 2),
            ]
            wait_for(
                lambda: agents["edge-01"].slot.current.version == "tiny-test-2",
                60,
                what="the canary on the new engine",
            )
        hub.stop()  # mid-rollout: the next hub carries on from the database
        time.sleep(1.0)
        hub = _hub(tmp_path, broker.port, transfer, keys)
        with TestClient(hub.web_app()) as client:
            wait_for(
                lambda: agents["edge-02"].slot.current.version == "tiny-test-2",
                60,
                what="wave 2 on edge-02",
            )
            wait_for(
                lambda: len(_rollout(client, hub, rollout_id)["wave_results"]) == 2,
                30,
                what="wave 2 judged without the absent edge",
            )
            body = _rollout(client, hub, rollout_id)
            assert body["state"] == "in_progress"  # waiting for edge-03
            assert [w["passed"] for w in body["wave_results"]] == [True, True]
            assert body["wave_results"][1]["devices"] == 1
            agents["edge-03"] = start_agent(tmp_path / "edge-03" / "edge.toml")  # it returns
            wait_for(
                lambda: agents["edge-03"].slot.current.version == "tiny-test-2",
                60,
                what="the returning edge catches up",
            )
            wait_for(
                lambda: _rollout(client, hub, rollout_id)["state"] == "completed",
                30,
                what="the rollout completed",
            )
            body = _rollout(client, hub, rollout_id)
            assert {d["state"] for d in body["devices"]} == {"done"}
            assert {d["active_model_version"] for d in body["devices"]} == {"tiny-test-2"}
            # every wafer dropped during the swap reached the hub once: none lost, none twice
            for device in ("edge-01", "edge-02"):
                wait_for(lambda d=device: len(_sequences(hub, d)) >= 8, 60, what=f"{device} wafers")
                assert _sequences(hub, device) == list(range(1, 9)), device
            audit = client.get("/api/v1/audit", headers=bearer(hub, "engineer")).json()
            actions = {e["action"] for e in audit["entries"]}
            assert {"release.register", "rollout.create"} <= actions
    finally:
        _stop(agents)
        hub.stop()


def test_a_failing_wave_rolls_back_every_moved_edge_and_alerts(
    tmp_path: Path, bundle_dir: Path, keys: Signer, broker: Any, new_release: Path
) -> None:
    hub = _hub(tmp_path, broker.port, free_port(), keys)
    add_role_users(hub)
    agents = _agents(tmp_path, bundle_dir, broker.port, keys, strict="edge-03")
    try:
        wait_for(lambda: _online(hub, 3), 30, what="three edges online at the hub")
        with TestClient(hub.web_app()) as client:
            release_id = _register(client, hub, new_release)
            res = client.post(
                "/api/v1/rollouts",
                json={
                    "release_id": release_id,
                    "waves": [{"devices": ["edge-01"]}, {"percent": 100}],
                    "gates": {"max_failure_share": 0.0},
                },
                headers=bearer(hub, "engineer"),
            )
            assert res.status_code == 201, res.text
            rollout_id = res.json()["rollout_id"]
            wait_for(
                lambda: _rollout(client, hub, rollout_id)["state"] == "rolled_back",
                90,
                what="the rollout rolled back",
            )
            body = _rollout(client, hub, rollout_id)
            assert [w["passed"] for w in body["wave_results"]] == [True, False]
            assert "failure share 50%" in body["reason"]
            states = {d["device_id"]: d["state"] for d in body["devices"]}
            assert states == {
                "edge-01": "rolled_back",
                "edge-02": "rolled_back",
                "edge-03": "failed",
            }
            for device in DEVICES:
                wait_for(
                    lambda d=device: agents[d].slot.current.version == "tiny-test-1",
                    30,
                    what=f"{device} back on its engine",
                )
            with hub.db.session() as s:
                alerts = [a for a in s.query(AlertRow) if a.rule_id == "rollout_gate"]
            assert len(alerts) == 1 and "failure share" in alerts[0].message
            # a finished rollout takes no more actions but a rollback
            res = client.post(
                f"/api/v1/rollouts/{rollout_id}/resume", headers=bearer(hub, "engineer")
            )
            assert res.status_code == 409
    finally:
        _stop(agents)
        hub.stop()


def test_an_engine_that_disagrees_in_shadow_is_stopped_by_the_hub_gate(
    tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer, broker: Any
) -> None:
    """The shipped engine as a candidate beside the tiny one: the edges would take it (their own
    agreement bar is 0), the hub's shadow-agreement gate (0.99) stops it after the canary."""
    from waferscope.edge.bundles import default_bundle_path

    other = candidate(default_bundle_path(), tmp_path / "other", val_npz, "shipped-as-5")
    release = keys.sign(other, tmp_path / "r5.wsrelease", 5)
    settings = {"shadow_wafers": 6, "min_agreement": 0.0, "latency_budget_ms": 5000}
    hub = _hub(tmp_path, broker.port, free_port(), keys)
    add_role_users(hub)
    agents = _agents(tmp_path, bundle_dir, broker.port, keys, settings=settings)
    try:
        wait_for(lambda: _online(hub, 3), 30, what="three edges online at the hub")
        with TestClient(hub.web_app()) as client:
            res = client.post(
                "/api/v1/rollouts",
                json={
                    "release_id": _register(client, hub, release),
                    "waves": [{"devices": ["edge-01"]}, {"percent": 100}],
                    "gates": {"min_shadow_agreement": 0.99, "latency_budget_ms": 5000},
                },
                headers=bearer(hub, "engineer"),
            )
            rollout_id = res.json()["rollout_id"]
            canary = agents["edge-01"]
            wait_for(lambda: canary.releases.trial is not None, 90, what="the shadow trial")
            folder = canary.config.ingest.hot_folder.path
            for i, wafer in enumerate(dataset_wafers(val_npz, 10, start=300)):
                drop(folder, f"s{i:02d}.xml", wafer_bytes(wafer))
            wait_for(
                lambda: _rollout(client, hub, rollout_id)["state"] == "rolled_back",
                120,
                what="the rollout rolled back",
            )
            body = _rollout(client, hub, rollout_id)
            assert "shadow agreement" in body["reason"], body["reason"]
            assert body["wave_results"][0]["shadow_wafers"] >= 6
            states = {d["device_id"]: d["state"] for d in body["devices"]}
            assert states == {"edge-01": "rolled_back", "edge-02": "waiting", "edge-03": "waiting"}
            wait_for(lambda: canary.slot.current.version == "tiny-test-1", 30, what="rollback")
    finally:
        _stop(agents)
        hub.stop()


def _sited(hub: Hub) -> bool:
    with hub.db.session() as s:
        return all(d.site == "fab3" for d in s.query(Device))


def _hub_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "waferscope.hub", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def test_a_hub_process_killed_mid_rollout_resumes_it(
    tmp_path: Path, bundle_dir: Path, keys: Signer, broker: Any, new_release: Path
) -> None:
    """SIGKILL the hub process between waves; the next one finishes the rollout."""
    config = tmp_path / "hub.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "hub-data"}"\n'
        f'[mqtt]\nport = {broker.port}\nclient_id = "hub-killed"\n'
        f"reconnect_min_s = 1\nreconnect_max_s = 2\n[http]\nenabled = false\n"
        f'[auth]\njwt_secret = "{JWT_SECRET}"\n'
        f'[releases]\ntrusted_root_keys = ["{keys.root_pub}"]\n'
        f'transfer_bind = "127.0.0.1:{free_port()}"\nrollout_tick_s = 0.3\n'
    )
    from waferscope.hub.config_loader import load_config

    local = Hub(load_config(config).config)  # the API in this process, nothing started
    add_role_users(local)
    log = tmp_path / "hub.log"
    proc = _hub_process(config, log)
    # the edges' births (not retained) must find the hub subscribed: it learns their sites
    wait_for(lambda: "hub running" in log.read_text(), 60, what="the hub process")
    agents = _agents(tmp_path, bundle_dir, broker.port, keys)
    try:
        wait_for(lambda: _online(local, 3), 60, what="three edges online at the hub")
        with TestClient(local.web_app()) as client:
            wait_for(lambda: _sited(local), 30, what="the edges' births")
            res = client.post(
                "/api/v1/rollouts",
                json={
                    "release_id": _register(client, local, new_release),
                    "waves": [{"devices": ["edge-01"]}, {"percent": 100}],
                    "gates": {"wave_timeout_s": 60},
                },
                headers=bearer(local, "engineer"),
            )
            rollout_id = res.json()["rollout_id"]
            wait_for(
                lambda: agents["edge-01"].slot.current.version == "tiny-test-2",
                60,
                what="the canary on the new engine",
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert _rollout(client, local, rollout_id)["state"] == "in_progress"  # mid-rollout
            proc = _hub_process(config, log)
            wait_for(
                lambda: _rollout(client, local, rollout_id)["state"] == "completed",
                90,
                what="the rollout completed by the next hub process",
            )
            assert all(w.slot.current.version == "tiny-test-2" for w in agents.values())
    finally:
        _stop(agents)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        local.stop()
