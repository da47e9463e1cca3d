"""The hub controls the federation: it runs a real SuperLink (TLS, node authentication),
provisions and registers an edge's node key (a SuperNode with the exported key bundle is let in),
and shows round progress and participation from the ServerApp's history file, over the API and
on the page (headless Chromium)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium, ready
from litestar.testing import TestClient

sys.path.insert(0, str(Path(__file__).parents[1] / "hub"))  # the hub tests' helpers
from hub_data import make_result, real_grids
from hub_testing import PASSWORD, add_role_users, bearer, feed, hub_config
from local_services import free_port, wait_for, wait_port

from waferscope.hub.app import Hub
from waferscope.hub.store import review
from waferscope.trainer.config import load_config
from waferscope.trainer.federated.deployment import APP_DIR, process_env, supernode_command
from waferscope.trainer.federated.server_state import FederatedRun, RoundRecord

from .conftest import server_config

pytestmark = pytest.mark.slow


@pytest.fixture
def fed_hub(tmp_path: Path, data_dir: Path) -> Iterator[Hub]:
    cfg = server_config(tmp_path, data_dir)
    hub = Hub(
        hub_config(
            tmp_path,
            federation={
                "enabled": True,
                "superlink_port": free_port(),
                "train_config": str(cfg),
                "min_new_labels": 1,
            },
        )
    )
    add_role_users(hub)
    hub.federation.start()
    wait_port(hub.config.federation.superlink_port, 60)
    yield hub
    hub.stop()


def test_hub_runs_the_superlink_provisions_nodes_and_shows_progress(
    fed_hub: Hub, tmp_path: Path, data_dir: Path, partitions: list[Path]
) -> None:
    hub, port = fed_hub, fed_hub.config.federation.superlink_port
    with TestClient(app=hub.web_app()) as client:
        url = "/api/v1/federation/nodes/edge-01"
        assert client.post(url, headers=bearer(hub, "reviewer")).status_code == 403
        made = client.post(url, headers=bearer(hub, "engineer"))
        assert made.status_code == 201, made.text
        keys = client.get(f"{url}/keys", headers=bearer(hub, "engineer"))
        assert keys.status_code == 200
        assert (
            client.get(
                "/api/v1/federation/nodes/edge-99/keys", headers=bearer(hub, "admin")
            ).status_code
            == 404
        )
    with tarfile.open(fileobj=io.BytesIO(keys.content)) as tar:
        assert sorted(tar.getnames()) == ["ca.crt", "edge-01.key", "edge-01.pub"]
        tar.extractall(tmp_path / "edge", filter="data")
    # an edge with that bundle joins the hub's SuperLink (TLS + node auth)
    edge = tmp_path / "edge"
    cmd = supernode_command(
        f"127.0.0.1:{port}",
        free_port(),
        [partitions[0]],
        ca_cert=edge / "ca.crt",
        private_key=edge / "edge-01.key",
    )
    log = tmp_path / "edge-01.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=process_env(), start_new_session=True
        )
    try:
        wait_for(lambda: "SuperNode ID:" in log.read_text(), 90, "the edge's SuperNode let in")
    finally:
        node.terminate()
        node.wait(30)
    node_id = int(
        next(x for x in log.read_text().splitlines() if "SuperNode ID:" in x).rsplit(":", 1)[1]
    )

    # the ServerApp's run state (written by the trainer's writer) is what the hub shows
    assert hub.config.federation.train_config is not None
    run = FederatedRun(load_config(hub.config.federation.train_config))
    for rnd, nodes in ((1, [node_id, 42]), (2, [node_id])):
        record = RoundRecord(rnd, nodes, {}, {}, {}, {}, 0.0, 3.5, 1000, 1000)
        run.finish_round(record, run.weights())
    with TestClient(app=hub.web_app()) as client:
        doc = client.get("/api/v1/federation", headers=bearer(hub, "operator")).json()
    assert doc["superlink"]["running"] and doc["nodes"] == ["edge-01"]
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    assert doc["rounds"][0]["nodes"] == ["edge-01", "node 42"]
    assert doc["participation"] == {"edge-01": 2, "node 42": 1}
    assert 0.0 <= doc["rounds"][1]["gate_macro_f1"] <= 1.0 and doc["rounds"][0]["bytes"] == 2000

    # enough new labels: the scheduler submits a run of the Flower App to the hub's SuperLink
    assert not hub.rounds.check()  # no labels yet
    hub.config.federation.app_dir = APP_DIR
    wafer = make_result(*real_grids(data_dir, 1)[0], 0, confidence=0.3, pattern="Loc")
    feed(hub, [wafer])
    with hub.db.session(write=True) as s:
        review.submit_review(s, wafer.result_id, reviewer="reviewer1", pattern="Donut")
    assert hub.rounds.new_labels() == 1 and hub.rounds.check()
    run_log = hub.federation.state_dir / "flwr-run.log"
    wait_for(lambda: "Successfully started run" in run_log.read_text(), 90, "the run submitted")
    assert hub.rounds.new_labels() == 0 and not hub.rounds.check()  # counted from the run's start

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(MISSING)
    import uvicorn
    from selenium.webdriver.common.by import By

    web = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.web_app(), host="127.0.0.1", port=web, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn")
    try:
        with chromium() as d:
            d.get(f"http://127.0.0.1:{web}/ui/federation")
            wait_for(lambda: "/login" in d.current_url, 10, "login redirect")
            d.find_element(By.ID, "username").send_keys("operator1")
            d.find_element(By.ID, "password").send_keys(PASSWORD)
            d.find_element(By.ID, "login-button").click()
            wait_for(lambda: d.current_url.endswith("/ui/federation") and ready(d), 10, "the page")
            assert "running" in d.find_element(By.ID, "federation-state").text
            rows = d.find_elements(By.CSS_SELECTOR, "#rounds-table tbody tr")
            assert len(rows) == 2 and "edge-01" in rows[0].text
            part = d.find_element(By.ID, "participation-table").text
            assert "edge-01 2" in part
    finally:
        server.should_exit = True
        thread.join(10)
