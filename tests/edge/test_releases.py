"""Signed releases on a real agent: A/B slots, health gate, shadow, commit, rollback, refusals.

Real onnxruntime sessions (the tiny test engine and the shipped one), a real SQLite store, a
real Mosquitto; results are counted from what a subscriber received, de-duplicated on their id.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from edge_test_support import (
    Broker,
    Subscriber,
    agent_toml,
    drop,
    free_port,
    start_agent,
    wafer_bytes,
    wait_for,
)
from release_keys import Signer, candidate, release_toml, rewrite
from sample_wafers import dataset_wafers

from waferscope.edge.app import Wiring
from waferscope.edge.bundles import default_bundle_path
from waferscope.edge.release_ledger import ReleaseState
from waferscope.edge.releases import ReleaseHealthError
from waferscope.protocols.bundle import describe_file, read_manifest, write_manifest
from waferscope.protocols.release import ReleaseDowngradeError, ReleaseFileError


def incoming(w: Wiring) -> Path:
    assert w.config.ingest.hot_folder.path is not None
    return w.config.ingest.hot_folder.path


def test_release_shadows_then_commits_without_losing_or_repeating_a_wafer(
    tmp_path: Path,
    bundle_dir: Path,
    val_npz: Path,
    keys: Signer,
    broker: Broker,
    subscriber: Subscriber,
) -> None:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    release = keys.sign(new, tmp_path / "r5.wsrelease", 5)
    config = agent_toml(tmp_path, bundle_dir, broker.port, release_toml(keys, shadow_wafers=8))
    wafers = list(dataset_wafers(val_npz, 30, start=100))
    w = start_agent(config)
    try:
        for i in range(6):
            drop(incoming(w), f"a{i:02d}.xml", wafer_bytes(wafers[i]))
        wait_for(lambda: len(subscriber.unique_results()) >= 6, 60, what="6 results")
        done = w.releases.install(release)
        assert (done.state, done.slot, done.golden_max_abs_diff) == (ReleaseState.SHADOW, "a", 0)
        assert w.slot.current.version == "tiny-test-1"  # the candidate only shadows
        for i in range(6, 30):
            drop(incoming(w), f"b{i:02d}.xml", wafer_bytes(wafers[i]))
            time.sleep(0.05)
        wait_for(lambda: len(subscriber.unique_results()) >= 30, 90, what="30 results")
        results = subscriber.unique_results()
        seqs = sorted(int(r["sequence"]) for r in results.values())
        assert seqs == list(range(1, 31))  # none lost, none twice
        assert len({r["wafer"]["sourceName"] for r in results.values()}) == 30
        by_seq = [
            v for _, v in sorted((int(r["sequence"]), r["modelVersion"]) for r in results.values())
        ]
        assert by_seq[:6] == ["tiny-test-1"] * 6
        assert by_seq[-1] == "tiny-test-2"
        switch = by_seq.index("tiny-test-2")
        assert set(by_seq[switch:]) == {"tiny-test-2"} and switch >= 6 + 8
        assert w.releases.ledger.in_state(ReleaseState.ACTIVE).version == 5  # type: ignore[union-attr]
        wait_for(lambda: subscriber.of_kind("shadow-report"), 10, what="shadow report")
        report = subscriber.of_kind("shadow-report")[-1].payload
        assert report["state"] == "active" and int(report["wafers"]) >= 8
        assert int(report["agreements"]) == int(report["wafers"])  # the same engine, renamed
        # a replay: the same number with other content, and an older number, are refused
        (new / "NOTES.md").write_text("other content")
        with pytest.raises(ReleaseDowngradeError, match="accepted before with other content"):
            w.releases.install(keys.sign(new, tmp_path / "r5b.wsrelease", 5))
        with pytest.raises(ReleaseDowngradeError, match="older than the accepted release 5"):
            w.releases.install(keys.sign(new, tmp_path / "r4.wsrelease", 4))

        def refusals() -> int:
            alerts = subscriber.of_kind("alert")
            return sum(a.payload["ruleKind"] == "release_refused" for a in alerts)

        wait_for(lambda: refusals() >= 2, 20, what="two release_refused alerts")
        assert w.slot.current.version == "tiny-test-2"  # still serving
    finally:
        w.agent.stop()
    again = start_agent(config)  # a restart runs the committed release from its slot
    try:
        assert again.slot.current.version == "tiny-test-2"
        assert again.slot.current.bundle.folder.parent.name == "a"
    finally:
        again.agent.stop()


def test_a_worse_engine_is_rolled_back_in_shadow(
    tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer, broker: Broker
) -> None:
    shipped = candidate(default_bundle_path(), tmp_path / "shipped", val_npz, "shipped-as-7")
    release = keys.sign(shipped, tmp_path / "r7.wsrelease", 7)
    settings = release_toml(keys, shadow_wafers=10, min_agreement=0.99, latency_budget_ms=5000)
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port, settings))
    try:
        w.releases.install(release)
        for i, wafer in enumerate(dataset_wafers(val_npz, 16, start=300)):
            drop(incoming(w), f"c{i:02d}.xml", wafer_bytes(wafer))
        wait_for(lambda: w.releases.trial is None, 180, what="the trial's end")
        wait_for(
            lambda: any(a["rule_kind"] == "release_rolled_back" for a in w.store.alerts()),
            10,
            what="the rollback alert",
        )
        row = w.releases.ledger.all()[0]
        assert (row.version, row.state) == (7, ReleaseState.ROLLED_BACK), row
        assert "agreement" in row.detail and "below 0.99" in row.detail
        assert w.slot.current.version == "tiny-test-1"
        assert w.releases.ledger.in_state(ReleaseState.ACTIVE) is None
        alerts = w.store.alerts()
        assert any(a["rule_kind"] == "release_rolled_back" for a in alerts)
    finally:
        w.agent.stop()


def test_runtime_failure_rolls_back_with_the_hub_unreachable(
    tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer
) -> None:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    settings = release_toml(keys, shadow_wafers=0)
    w = start_agent(agent_toml(tmp_path, bundle_dir, free_port(), settings))  # nobody listens there
    try:
        assert w.releases.install(keys.sign(new, tmp_path / "r2.wsrelease", 2)).state == "active"
        assert w.slot.current.version == "tiny-test-2"
        w.slot.current.runner.close()  # the engine now fails on every call
        for i, wafer in enumerate(dataset_wafers(val_npz, 5, start=500)):
            drop(incoming(w), f"d{i}.xml", wafer_bytes(wafer))
        wait_for(lambda: w.store.counts().get("results", 0) >= 5, 60, what="5 results")
        rows = w.store.recent_results(limit=10)
        assert len(rows) == 5 and {r["model_version"] for r in rows} == {"tiny-test-1"}
        assert w.slot.current.version == "tiny-test-1"
        assert w.releases.ledger.all()[0].state is ReleaseState.ROLLED_BACK
        assert "failed at run time" in w.releases.ledger.all()[0].detail
        assert any(a["rule_kind"] == "release_rolled_back" for a in w.store.alerts())
    finally:
        w.agent.stop()


def test_health_gate_refuses_a_golden_mismatch(
    tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer
) -> None:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    shipped = candidate(default_bundle_path(), tmp_path / "shipped", val_npz, "x")
    shutil.copy(shipped / "golden.npz", new / "golden.npz")  # another engine's logits
    manifest = read_manifest(new)
    for f in manifest.files:
        if f.path == "golden.npz":
            f.CopyFrom(describe_file(new, "golden.npz", f.role))
    write_manifest(new, manifest)
    w = start_agent(agent_toml(tmp_path, bundle_dir, free_port(), release_toml(keys)))
    try:
        with pytest.raises(ReleaseHealthError, match="golden"):
            w.releases.install(keys.sign(new, tmp_path / "r3.wsrelease", 3))
        assert w.slot.current.version == "tiny-test-1"
        assert w.releases.ledger.all()[0].state is ReleaseState.ROLLED_BACK
    finally:
        w.agent.stop()


def test_offline_install_cli_and_a_tampered_release(
    tmp_path: Path, bundle_dir: Path, val_npz: Path, keys: Signer
) -> None:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    release = keys.sign(new, tmp_path / "r9.wsrelease", 9)
    config = agent_toml(tmp_path, bundle_dir, free_port(), release_toml(keys))
    exe = [sys.executable, "-m", "waferscope.protocols.cli.main", "edge", "install-release"]
    bad = tmp_path / "bad.wsrelease"
    shutil.copy(release, bad)
    rewrite(
        bad, lambda ms: [(i, d[:-1] + b"!" if i.name.endswith("head.npz") else d) for i, d in ms]
    )

    def install(path: Path) -> subprocess.CompletedProcess[str]:
        cmd = [*exe, str(path), "-c", str(config)]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)

    refused = install(bad)
    assert refused.returncode == 1 and "head.npz sha256" in refused.stderr
    ok = install(release)
    assert ok.returncode == 0, ok.stderr
    assert "release 9 (tiny-test-2) installed in slot a: active" in ok.stdout
    w = start_agent(config)
    try:
        assert w.slot.current.version == "tiny-test-2"
        kinds = [a["rule_kind"] for a in w.store.alerts()]
        assert "release_refused" in kinds  # the refused file left its alert for the hub
        with pytest.raises(ReleaseFileError):
            w.releases.install(bad)
    finally:
        w.agent.stop()
