"""Per-edge MQTT credentials written by the hub, enforced by a real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hub_data import results
from hub_support import MOSQUITTO, Broker, Publisher, wait_for
from hub_testing import hub_config
from sqlalchemy import select

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import Result
from waferscope.hub.mqtt_auth import issue_edge_credentials
from waferscope.protocols import messages, topics


@pytest.fixture
def secured_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    passwords = issue_edge_credentials(
        ["edge-01", "edge-02"], folder / "passwd", folder / "acl", hub_user="waferscope-hub"
    )
    broker = Broker(
        folder,
        extra_conf=f"allow_anonymous false\npassword_file {folder / 'passwd'}\n"
        f"acl_file {folder / 'acl'}\n",
    )
    broker.start()
    yield broker, passwords
    broker.stop()


def test_each_edge_speaks_only_for_itself(tmp_path: Path, secured_broker, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    broker, passwords = secured_broker
    assert set(passwords) == {"edge-01", "edge-02", "waferscope-hub"}
    # re-issuing one edge keeps the other lines of the password file
    again = issue_edge_credentials(
        ["edge-02"], broker.folder / "passwd", broker.folder / "acl", hub_user="waferscope-hub"
    )
    assert set(again) == {"edge-02"}
    passwords["edge-02"] = again["edge-02"]
    broker.stop()
    broker.start()
    cfg = hub_config(
        tmp_path,
        mqtt={
            "enabled": True,
            "port": broker.port,
            "username": "waferscope-hub",
            "password": passwords["waferscope-hub"],
        },
    )
    hub = Hub(cfg)
    hub.start_background(services=False)
    good = Publisher(
        broker.port, client_id="edge-01", username="edge-01", password=passwords["edge-01"]
    )
    wrong = Publisher(broker.port, client_id="edge-02", username="edge-02", password="guess")
    try:
        wait_for(hub.ingest.subscribed.is_set, 15, what="hub subscription")  # type: ignore[union-attr]
        assert good.connected.wait(10)
        wait_for(lambda: bool(wrong.refused), 10, what="refused connection")
        assert not wrong.connected.is_set()
        mine, theirs = list(results(data_dir, 2, device_id="edge-01"))
        good.publish(topics.result_topic("edge-01"), messages.encode(mine), "mine")
        spoof = results(data_dir, 1, start=5, device_id="edge-02").__next__()
        good.publish(topics.result_topic("edge-02"), messages.encode(spoof), "spoof")
        wait_for(lambda: good.pending() == 0, 10, what="PUBACKs")

        def stored() -> set[str]:
            with hub.db.session() as s:
                return set(s.scalars(select(Result.result_id)))

        wait_for(lambda: mine.result_id in stored(), 15, what="edge-01's own result")
        time.sleep(1.0)
        assert spoof.result_id not in stored()  # the ACL kept edge-01 off edge-02's topic
        assert theirs.result_id not in stored()
    finally:
        good.close()
        wrong.close()
        hub.stop()
