"""Rollouts in the database: create one, record what edges answered, apply manual actions.

Every change happens in the caller's transaction and every human action is audited with it, so
a hub killed at any moment restarts from what was committed (the engine re-sends commands that
were never answered; edges execute a command id at most once).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import Device, Release, Rollout, RolloutDevice
from waferscope.hub.releases import get_release
from waferscope.hub.rollout import plan
from waferscope.hub.store.audit import audit
from waferscope.protocols import messages
from waferscope.protocols.messages import new_message_id
from waferscope.protocols.pb import deploy_pb2 as pb
from waferscope.protocols.pb.release_pb2 import ShadowReport


class RolloutNotFoundError(plan.RolloutError, KeyError):
    """No rollout has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "rollout not found"


def group_devices(session: Session, request: plan.RolloutRequest) -> list[str]:
    """The device ids of the group a request names (known devices only)."""
    stmt = select(Device.device_id)
    if request.devices is not None:
        known = set(session.scalars(stmt.where(Device.device_id.in_(request.devices))))
        unknown = sorted(set(request.devices) - known)
        if unknown:
            raise plan.RolloutError(f"unknown device(s): {', '.join(unknown[:10])}")
        return sorted(known)
    if request.site is not None:
        stmt = stmt.where(Device.site == request.site)
    return sorted(session.scalars(stmt))


def create_rollout(
    session: Session, request: plan.RolloutRequest, *, actor: str, remote_addr: str = ""
) -> Rollout:
    """Plan a rollout (devices assigned to waves) and record it, pending."""
    release = get_release(session, request.release_id)
    busy = session.scalar(
        select(Rollout.rollout_id).where(Rollout.state.not_in(sorted(plan.FINAL_STATES)))
    )
    if busy is not None:
        raise plan.RolloutError(f"rollout {busy} is still running; finish or abort it first")
    devices = group_devices(session, request)
    waves = plan.assign_waves(devices, request.waves)
    now = utcnow()
    row = Rollout(
        rollout_id=new_message_id(),
        release_id=release.release_id,
        state=plan.PENDING,
        wave=0,
        waves=[w.model_dump(exclude_none=True) for w in request.waves],
        gates=request.gates.model_dump(),
        wave_results=[],
        group={"devices": request.devices, "site": request.site},
        reason="",
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    current = dict(
        session.execute(
            select(Device.device_id, Device.model_version).where(Device.device_id.in_(devices))
        ).all()
    )
    for device_id, wave in sorted(waves.items()):
        session.add(
            RolloutDevice(
                rollout_id=row.rollout_id,
                device_id=device_id,
                wave=wave,
                state=plan.WAITING,
                previous_model_version=current.get(device_id),
                attempts=0,
                error="",
                updated_at=now,
            )
        )
    audit(
        session,
        actor,
        "rollout.create",
        row.rollout_id,
        {"release_id": release.release_id, "devices": len(devices), "waves": row.waves},
        remote_addr=remote_addr,
    )
    session.flush()
    return row


def get_rollout(session: Session, rollout_id: str) -> Rollout:
    row = session.get(Rollout, rollout_id)
    if row is None:
        raise RolloutNotFoundError(f"no rollout {rollout_id!r}")
    return row


def devices_of(session: Session, rollout_id: str) -> list[RolloutDevice]:
    return list(
        session.scalars(
            select(RolloutDevice)
            .where(RolloutDevice.rollout_id == rollout_id)
            .order_by(RolloutDevice.wave, RolloutDevice.device_id)
        )
    )


def list_rollouts(session: Session, limit: int = 100) -> list[Rollout]:
    return list(session.scalars(select(Rollout).order_by(Rollout.created_at.desc()).limit(limit)))


def act(
    session: Session, rollout_id: str, action: str, *, actor: str, remote_addr: str = ""
) -> Rollout:
    """A manual pause / resume / abort / rollback (the engine carries out a rollback)."""
    row = get_rollout(session, rollout_id)
    before = row.state
    row.state = plan.apply_action(row.state, action)
    if action == "rollback":
        row.reason = f"rolled back by {actor}"
    elif action == "abort":
        row.reason = f"aborted by {actor}"
    row.updated_at = utcnow()
    audit(
        session,
        actor,
        f"rollout.{action}",
        rollout_id,
        {"from": before, "to": row.state},
        remote_addr=remote_addr,
    )
    return row


# --------------------------------------------------------------------------- edge answers
_ACK_STATE = {
    pb.DEPLOY_STATUS_RECEIVED: plan.INSTALLING,
    pb.DEPLOY_STATUS_IN_PROGRESS: plan.INSTALLING,
    pb.DEPLOY_STATUS_INSTALLED: plan.SHADOWING,
    pb.DEPLOY_STATUS_ACTIVATED: plan.DONE,
    pb.DEPLOY_STATUS_FAILED: plan.DEVICE_FAILED,
    pb.DEPLOY_STATUS_REJECTED: plan.DEVICE_FAILED,
    pb.DEPLOY_STATUS_EXPIRED: plan.DEVICE_FAILED,
    pb.DEPLOY_STATUS_CANCELLED: plan.DEVICE_FAILED,
}
MAX_ATTEMPTS = 3  # install commands per device when downloads fail (the hub restarted, ...)
_ORDER = {plan.SENT: 0, plan.INSTALLING: 1, plan.SHADOWING: 2, plan.DONE: 3, plan.DEVICE_FAILED: 3}


def record_ack(session: Session, ack: pb.DeployAck) -> RolloutDevice | None:
    """Apply one DeployAck to the device it answers (None: no rollout sent that command)."""
    now = utcnow()
    row = session.scalar(select(RolloutDevice).where(RolloutDevice.command_id == ack.command_id))
    if row is not None:
        new = _ACK_STATE.get(ack.status)
        # acks may arrive out of order or twice: a device never moves backwards
        if new is not None and _ORDER.get(row.state, 9) <= _ORDER[new] and row.state != new:
            row.state = new
        row.last_ack = pb.DeployStatus.Name(ack.status).removeprefix("DEPLOY_STATUS_").lower()
        if ack.HasField("error") and ack.error.code:
            row.error = f"{ack.error.code}: {ack.error.message}"[:2000]
            if ack.error.code == "download_failed" and row.attempts < MAX_ATTEMPTS:
                # the bytes did not arrive (the transfer service went away): a new command
                # (an edge runs a command id once) fetches again, resuming its partial file
                row.state, row.command_id = plan.WAITING, None
    else:
        row = session.scalar(
            select(RolloutDevice).where(RolloutDevice.rollback_command_id == ack.command_id)
        )
        if row is None:
            return None
        row.last_ack = pb.DeployStatus.Name(ack.status).removeprefix("DEPLOY_STATUS_").lower()
        if ack.status in (pb.DEPLOY_STATUS_ROLLED_BACK, pb.DEPLOY_STATUS_REJECTED):
            # REJECTED "nothing_to_roll_back": the edge already left the release
            row.state = plan.DEVICE_ROLLED_BACK
    if ack.active_model_version:
        row.active_model_version = ack.active_model_version
    row.updated_at = now
    return row


def record_report(session: Session, report: ShadowReport) -> RolloutDevice | None:
    """Apply one ShadowReport to the device's row in the rollout of that release."""
    stmt = (
        select(RolloutDevice)
        .join(Rollout, Rollout.rollout_id == RolloutDevice.rollout_id)
        .where(RolloutDevice.device_id == report.device_id)
        .where(RolloutDevice.command_id.is_not(None))
        .order_by(Rollout.created_at.desc())
    )
    for row in session.scalars(stmt):
        rollout = session.get(Rollout, row.rollout_id)
        assert rollout is not None
        release = session.get(Release, rollout.release_id)
        if release is None or int(release.version) != int(report.release_version):
            continue
        doc: dict[str, Any] = messages.to_json_dict(report)
        row.report = doc
        if report.state in ("committed", "active") and row.state in (
            plan.INSTALLING,
            plan.SHADOWING,
            plan.SENT,
        ):
            row.state = plan.DONE
            row.active_model_version = report.candidate_model_version
        elif report.state == "rolled_back" and row.state not in (
            plan.ROLLBACK_SENT,
            plan.DEVICE_ROLLED_BACK,
        ):
            row.state = plan.DEVICE_FAILED
            row.error = f"shadow trial rolled back: {report.reason}"[:2000]
        row.updated_at = utcnow()
        return row
    return None
