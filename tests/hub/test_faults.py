"""Faults during a burst of 10,000 results (real Mosquitto, real hub process, real databases).

* the hub ingest process is killed with SIGKILL mid-burst and started again;
* the broker is restarted mid-burst.

After each, every result whose PUBLISH the broker acknowledged (PUBACK to the edge) is in the
database exactly once (the primary key makes "more than once" impossible, so the check is that
the stored set equals the acknowledged set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_data import results
from hub_support import Broker, Publisher, wait_for
from hub_testing import JWT_SECRET
from sqlalchemy import create_engine, func, select, text

from waferscope.hub.db.schema import Result
from waferscope.protocols import messages, topics

BURST = 10_000
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def burst(data_dir: Path) -> list[tuple[str, bytes]]:
    """(result id, payload) of 10,000 results built from real maps (built once per module)."""
    return [
        (m.result_id, messages.encode(m))
        for m in results(data_dir, BURST, device_id="edge-09", embedding=False)
    ]


def write_config(tmp_path: Path, broker: Broker, db_url: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f"""data_dir = "{tmp_path / "hub-data"}"
[database]
url = "{db_url}"
[mqtt]
port = {broker.port}
client_id = "hub-fault-test"
reconnect_min_s = 1
reconnect_max_s = 2
[http]
enabled = false
[auth]
jwt_secret = "{JWT_SECRET}"
""",
        encoding="utf-8",
    )
    return path


def start_ingest(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "waferscope.hub", "ingest", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


class Store:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def count(self) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(Result)).scalar() or 0)
        except Exception:  # the schema may not exist yet while the hub starts
            return 0

    def ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT result_id FROM results"))]


def publish_all(pub: Publisher, burst: list[tuple[str, bytes]], during: object = None) -> None:
    topic = topics.result_topic("edge-09", site="fab3")
    for i, (rid, payload) in enumerate(burst):
        pub.publish(topic, payload, rid)
        if callable(during):
            during(i)


def test_hub_killed_during_a_burst(
    tmp_path: Path, broker: Broker, db_url: str, burst: list[tuple[str, bytes]]
) -> None:
    config = write_config(tmp_path, broker, db_url)
    log = tmp_path / "hub.log"
    hub = start_ingest(config, log)
    store = Store(db_url)
    pub = Publisher(broker.port, client_id="edge-09")
    killed = []
    try:
        assert pub.connected.wait(10)
        wait_for(lambda: "subscribing" in log.read_text(errors="replace"), 60, what="hub ready")

        def kill_mid_burst(i: int) -> None:
            if not killed and i >= BURST // 3 and store.count() > 0:
                hub.send_signal(signal.SIGKILL)
                hub.wait(10)
                killed.append(store.count())

        publish_all(pub, burst, kill_mid_burst)
        if not killed:  # the hub was slower than the publisher: kill it now, mid-ingest
            wait_for(lambda: store.count() > 0, 60, what="first commits")
            hub.send_signal(signal.SIGKILL)
            hub.wait(10)
            killed.append(store.count())
        assert killed[0] < BURST, "the hub finished before it could be killed"
        wait_for(lambda: pub.pending() == 0, 120, what="every PUBACK")
        hub = start_ingest(config, log)
        wait_for(
            lambda: store.count() >= len(pub.acked),
            240,
            interval=0.5,
            what="the restarted hub to catch up",
        )
        time.sleep(1.0)  # anything more would be a duplicate or a stranger
        stored = store.ids()
        assert len(stored) == len(set(stored))
        assert set(stored) == pub.acked
        assert len(pub.acked) == BURST and not pub.no_subscribers
    finally:
        pub.close()
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            hub.wait(20)
        store.engine.dispose()


def test_broker_restarted_during_a_burst(
    tmp_path: Path, broker: Broker, sqlite_url: str, burst: list[tuple[str, bytes]]
) -> None:
    config = write_config(tmp_path, broker, sqlite_url)
    log = tmp_path / "hub.log"
    hub = start_ingest(config, log)
    store = Store(sqlite_url)
    pub = Publisher(broker.port, client_id="edge-09")
    restarted = []
    try:
        assert pub.connected.wait(10)
        wait_for(lambda: "subscribing" in log.read_text(errors="replace"), 60, what="hub ready")

        def restart_broker(i: int) -> None:
            if not restarted and i >= BURST // 2:
                broker.stop()  # SIGTERM: Mosquitto saves its sessions and queues
                time.sleep(0.5)
                broker.start()
                restarted.append(i)

        publish_all(pub, burst, restart_broker)
        assert restarted
        wait_for(lambda: pub.pending() == 0, 180, interval=0.2, what="every PUBACK")
        try:
            wait_for(
                lambda: store.count() >= len(pub.acked),
                120,
                interval=0.5,
                what="the hub to store every accepted result",
            )
        except AssertionError:
            print("stored", store.count(), "acked", len(pub.acked))
            print(log.read_text(errors="replace")[-3000:])
            print(broker.log()[-3000:])
            raise
        time.sleep(1.0)
        stored = store.ids()
        assert len(stored) == len(set(stored))
        assert set(stored) == pub.acked
        assert len(pub.acked) == BURST and not pub.no_subscribers
        assert hub.poll() is None, "the hub must ride out a broker restart"
    finally:
        pub.close()
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            hub.wait(20)
        store.engine.dispose()
