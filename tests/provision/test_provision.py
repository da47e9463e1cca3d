"""A real apply of ansible/playbooks/site.yml: a broker, a hub and two edges on this machine.

Each host is a folder (its root prefix) reached with the local connection
(tests/support/provision_fleet.py says why). The test installs from a wheelhouse built from this
checkout, applies the site twice (the second changes nothing), starts every part from its
installed systemd unit, drops a real tester file into an edge's hot folder and finds the wafer's
result in the hub's database.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_fleet import REPO, ProvisionFleet, recap

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """waferscope's wheels from this checkout plus every dependency, cached in .cache/."""
    out = REPO / ".cache" / "wheelhouse"
    done = subprocess.run(
        [str(REPO / "scripts" / "build-wheelhouse.sh"), str(out)],
        env={**os.environ, "WAFERSCOPE_WHEELHOUSE_KEEP_DEPS": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[ProvisionFleet]:
    fleet = ProvisionFleet(tmp_path_factory.mktemp("fleet"), wheelhouse)
    fleet.write_inventory()
    yield fleet
    fleet.stop()


def test_a_wrong_variable_is_refused_before_anything_changes(fleet: ProvisionFleet) -> None:
    run = fleet.playbook("site.yml", "-e", "waferscope_broker_tls_port=eighty-eight-eighty-three")
    assert run.returncode != 0
    assert "Validating arguments against arg spec" in run.stdout
    assert "waferscope_broker_tls_port" in run.stdout
    assert "is of type" in run.stdout
    assert all(h["changed"] == 0 for h in recap(run.stdout).values())
    assert not fleet.root("broker").exists()


def test_site_applies_then_changes_nothing(fleet: ProvisionFleet) -> None:
    first = fleet.playbook("site.yml")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    hosts = recap(first.stdout)
    assert set(hosts) == {"broker", "hub", "edge-01", "edge-02"}
    assert all(h["failed"] == 0 and h["changed"] > 0 for h in hosts.values())

    second = fleet.playbook("site.yml")
    assert second.returncode == 0, second.stdout[-6000:]
    assert {h: r["changed"] for h, r in recap(second.stdout).items()} == dict.fromkeys(hosts, 0)


def test_the_acl_is_the_hubs_own(fleet: ProvisionFleet) -> None:
    from waferscope.hub.mqtt_auth import acl_text

    def rules(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]

    written = (fleet.root("broker") / "etc/waferscope/broker/acl").read_text(encoding="utf-8")
    assert rules(written) == rules(acl_text("waferscope-hub"))
    users = (fleet.root("broker") / "etc/waferscope/broker/passwd").read_text(encoding="utf-8")
    assert sorted(line.split(":")[0] for line in users.splitlines()) == [
        "edge-01",
        "edge-02",
        "waferscope-hub",
    ]


def test_a_jetson_gets_the_tensorrt_runner(fleet: ProvisionFleet) -> None:
    marker = fleet.root("edge-02") / "etc/nv_tegra_release"
    marker.write_text("# R36 (release), REVISION: 4.0\n", encoding="utf-8")
    try:
        run = fleet.playbook("site.yml", "--check", "--diff", "--limit", "edge-02")
    finally:
        marker.unlink()
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"^\+\s+runner: tensorrt$", run.stdout, re.M), run.stdout[-4000:]
    assert re.search(r"^-\s+runner: onnxruntime$", run.stdout, re.M)
    unit = (fleet.root("edge-01") / "etc/systemd/system/waferscope-edge.service").read_text()
    for hardening in ("NoNewPrivileges=true", "ProtectSystem=strict", "Restart=always", "User="):
        assert hardening in unit


def test_a_wafer_reaches_the_provisioned_hub(fleet: ProvisionFleet, tester_dir: Path) -> None:
    fleet.start("broker", "waferscope-broker.service", fleet.broker_port)
    fleet.start("hub", "waferscope-hub.service", fleet.hub_port)
    for edge in fleet.edges:
        fleet.start(edge, "waferscope-edge.service", fleet.panel_ports[edge])

    hot = fleet.root("edge-02") / "var/lib/waferscope/edge/incoming"
    shutil.copyfile(tester_dir / "stdf" / "a595.stdf.gz", hot / "a595.stdf.gz.part")
    (hot / "a595.stdf.gz.part").rename(hot / "a595.stdf.gz")

    database = fleet.root("hub") / "var/lib/waferscope/hub/hub.sqlite"
    deadline = time.monotonic() + 120
    rows: list[tuple[str, str, str, str]] = []
    while time.monotonic() < deadline and not rows:
        time.sleep(1)
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT device_id, tester_id, lot_id, wafer_id FROM results"
            ).fetchall()
    logs = "".join(p.read_text()[-1500:] for p in (fleet.base / "logs").iterdir())
    assert rows == [("edge-02", "a595-tst", "TEST", "09")], logs
