"""Rollout rows: planning into waves, edge answers applied in any order, manual actions audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from release_keys import make_signer

from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Device
from waferscope.hub.releases import register_release
from waferscope.hub.rollout import plan
from waferscope.hub.rollout.store import act, create_rollout, devices_of, record_ack, record_report
from waferscope.hub.store.audit import recent_audit
from waferscope.protocols.pb import deploy_pb2 as pb
from waferscope.protocols.pb.release_pb2 import ShadowReport


@pytest.fixture
def planned(sqlite_db: Database, blob_dir, bundle_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    keys = make_signer(tmp_path / "keys")
    data = keys.sign(bundle_dir, tmp_path / "r.wsrelease", 4).read_bytes()
    with sqlite_db.session(write=True) as s:
        release, _ = register_release(s, blob_dir, data, keys.roots, actor="eng")  # type: ignore[arg-type]
        for i in range(4):
            s.add(Device(device_id=f"e{i}", site="fab3", state="online", model_version="m1"))
        s.flush()
        request = plan.parse_request(
            {"release_id": release.release_id, "waves": [{"canary": 1}, {"percent": 100}]}
        )
        rollout = create_rollout(s, request, actor="eng")
        rows = devices_of(s, rollout.rollout_id)
        for i, d in enumerate(rows):  # as the engine does when it sends
            d.command_id = f"00000000-0000-7000-8000-00000000000{i}"
            d.state = plan.SENT
        with pytest.raises(plan.RolloutError, match="still running"):
            create_rollout(s, request, actor="eng")
        return rollout.rollout_id


def _ack(command: str, status: int, code: str = "") -> pb.DeployAck:
    ack = pb.DeployAck(command_id=command, device_id="e0", status=status)  # type: ignore[arg-type]
    if code:
        ack.error.code, ack.error.message = code, "why"
    return ack


def test_acks_move_devices_forward_only_and_failed_downloads_retry(
    sqlite_db: Database, planned: str
) -> None:
    c0, c1 = "00000000-0000-7000-8000-000000000000", "00000000-0000-7000-8000-000000000001"
    with sqlite_db.session(write=True) as s:
        waves = [(d.device_id, d.wave, d.previous_model_version) for d in devices_of(s, planned)]
        assert waves == [("e0", 0, "m1"), ("e1", 1, "m1"), ("e2", 1, "m1"), ("e3", 1, "m1")]
        assert record_ack(s, _ack(c0, pb.DEPLOY_STATUS_ACTIVATED)).state == plan.DONE  # type: ignore[union-attr]
        # a late RECEIVED does not move it back
        assert record_ack(s, _ack(c0, pb.DEPLOY_STATUS_RECEIVED)).state == plan.DONE  # type: ignore[union-attr]
        row = record_ack(s, _ack(c1, pb.DEPLOY_STATUS_FAILED, "download_failed"))
        assert row is not None and row.state == plan.WAITING and row.command_id is None
        assert row.error == "download_failed: why"
        assert record_ack(s, _ack("00000000-0000-7000-8000-0000000000ff", 1)) is None
        bad = record_ack(
            s, _ack("00000000-0000-7000-8000-000000000002", pb.DEPLOY_STATUS_REJECTED, "X")
        )
        assert bad is not None and bad.state == plan.DEVICE_FAILED


def test_shadow_reports_settle_devices(sqlite_db: Database, planned: str) -> None:
    with sqlite_db.session(write=True) as s:
        other = ShadowReport(device_id="e1", release_version=3, state="active")
        assert record_report(s, other) is None  # another release's report
        done = record_report(
            s,
            ShadowReport(
                device_id="e1",
                release_version=4,
                state="active",
                wafers=9,
                agreements=9,
                candidate_model_version="m2",
            ),
        )
        assert done is not None and done.state == plan.DONE and done.report["wafers"] == "9"
        back = record_report(
            s,
            ShadowReport(
                device_id="e2",
                release_version=4,
                state="rolled_back",
                reason="agreement 0.5 below 0.8",
            ),
        )
        assert back is not None and back.state == plan.DEVICE_FAILED
        assert "agreement 0.5" in back.error


def test_manual_actions_are_audited(sqlite_db: Database, planned: str) -> None:
    with sqlite_db.session(write=True) as s:
        assert act(s, planned, "pause", actor="eng2").state == plan.PAUSED
        with pytest.raises(plan.RolloutError, match="cannot pause"):
            act(s, planned, "pause", actor="eng2")
        assert act(s, planned, "rollback", actor="eng2").reason == "rolled back by eng2"
    with sqlite_db.session() as s:
        entries = [(e.actor, e.action, e.detail) for e in recent_audit(s)][:2]
    assert entries == [
        ("eng2", "rollout.rollback", {"from": "paused", "to": "rolling_back"}),
        ("eng2", "rollout.pause", {"from": "pending", "to": "paused"}),
    ]
