"""A real apply of ansible/playbooks/site.yml: a broker, a hub and two edges on this machine.

Each host is a folder (its root prefix) reached with the local connection
(tests/support/provision_fleet.py says why). The hub installs from a wheelhouse built from this
checkout, the edges from a signed edge image built from it (firmware_images/, verified against
the root key before anything is unpacked); the test applies the site twice (the second changes
nothing), refuses a tampered image, starts every part from its installed systemd unit, drops a
real tester file into an edge's hot folder and finds the wafer's result in the hub's database.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_fleet import BIN, REPO, ProvisionFleet, recap
from release_keys import rewrite

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
def image(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> tuple[Path, Path]:
    """(signed edge image, root public key): keys and image made with the operators' commands."""
    work = tmp_path_factory.mktemp("image")
    keygen = [str(BIN / "waferscope"), "release", "keygen", str(work / "keys")]
    subprocess.run([*keygen, "--name", "root"], check=True, capture_output=True)
    subprocess.run(
        [*keygen, "--name", "release", "--root-key", str(work / "keys" / "root.key")],
        check=True,
        capture_output=True,
    )
    out = work / "waferscope-edge-image-1.tar"
    build = [
        str(BIN / "python"), str(REPO / "firmware_images" / "build_image.py"),
        "--key", str(work / "keys" / "release.key"),
        "--delegation", str(work / "keys" / "release.delegation.json"),
        "--version", "1", "--out", str(out), "--wheels", str(wheelhouse),
    ]  # fmt: skip
    done = subprocess.run(build, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, work / "keys" / "root.pub"


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, image: tuple[Path, Path]
) -> Iterator[ProvisionFleet]:
    fleet = ProvisionFleet(tmp_path_factory.mktemp("fleet"), wheelhouse, *image)
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


def test_edges_run_the_verified_image(fleet: ProvisionFleet) -> None:
    for edge in fleet.edges:
        images = list((fleet.root(edge) / "opt/waferscope/images").iterdir())
        assert len(images) == 1
        assert (images[0] / "engine" / "manifest.json").is_file()
        assert any((images[0] / "wheels").glob("waferscope_edge-*.whl"))
        config = (fleet.root(edge) / "etc/waferscope/edge/edge.yaml").read_text(encoding="utf-8")
        assert f"path: {images[0] / 'engine'}" in config
        assert str(fleet.root(edge) / "etc/waferscope/release/root.pub") in config


def test_a_tampered_image_is_refused_and_changes_nothing(
    fleet: ProvisionFleet, tmp_path: Path
) -> None:
    assert fleet.image is not None
    edge = fleet.root("edge-02")
    config = (edge / "etc/waferscope/edge/edge.yaml").read_text(encoding="utf-8")
    with tarfile.open(fleet.image) as tar:
        tar.extractall(tmp_path / "image", filter="data")

    def flip(members):  # type: ignore[no-untyped-def]
        return [
            (i, d[:-10] + bytes([d[-10] ^ 1]) + d[-9:] if "waferscope_edge-" in i.name else d)
            for i, d in members
        ]

    rewrite(tmp_path / "image" / "image.wsrelease", flip)
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tampered, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("install.sh", "verify_image.py", "image.wsrelease"):
            tar.add(tmp_path / "image" / name, arcname=name)
    limit = ("--limit", "edge-02")
    run = fleet.playbook("site.yml", *limit, "-e", f"waferscope_edge_image={tampered}")
    assert run.returncode != 0
    assert "sha256 differs from the signed manifest" in run.stdout, run.stdout[-4000:]
    assert len(list((edge / "opt/waferscope/images").iterdir())) == 1
    assert (edge / "etc/waferscope/edge/edge.yaml").read_text(encoding="utf-8") == config
    # the good image back on the host, as it was
    again = fleet.playbook("site.yml", *limit)
    assert again.returncode == 0, again.stdout[-4000:]


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
    while time.monotonic() < deadline and len(rows) < 3:  # the file holds 3 wafers
        time.sleep(1)
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT device_id, tester_id, lot_id, wafer_id FROM results ORDER BY wafer_id"
            ).fetchall()
    logs = "".join(p.read_text()[-1500:] for p in (fleet.base / "logs").iterdir())
    assert rows == [("edge-02", "a595-tst", "TEST", w) for w in ("02", "03", "09")], logs
