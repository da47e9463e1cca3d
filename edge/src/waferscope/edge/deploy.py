"""Deploy commands from the hub: fetch the named release, install it, acknowledge each step.

A ``DeployCommand`` arrives on the device's ``deploy`` topic (QoS 1, never retained; the
persistent MQTT session keeps it while the edge is away). It is executed at most once (its id is
recorded in the store), on this module's own thread so the MQTT client never waits on a download:
the release file is fetched by the command's ``fetch_method`` (``FETCHERS``: the hub's
BundleTransfer gRPC service, or HTTPS with the ``[release]`` CA file and token; both resumable: a
``.part`` file survives a broken connection or a restart and the next try continues from its
size), its SHA-256 checked, then handed to :class:`~waferscope.edge.releases.ReleaseManager`.
Every step is answered with a ``DeployAck`` on ``deploy-ack``.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from waferscope.edge.release_ledger import ReleaseState
from waferscope.edge.releases import ReleaseHealthError, ReleaseManager
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import deploy_pb2 as pb
from waferscope.protocols.release import http_fetch, transfer
from waferscope.protocols.release.transfer import ReleaseTransferError

log = logging.getLogger(__name__)
AckSink = Callable[[pb.DeployAck], None]
# (manager, device id, bundle ref, destination): fetch the release file, ReleaseTransferError if not
Fetcher = Callable[[ReleaseManager, str, pb.BundleRef, Path], Path]


def _fetch_grpc(manager: ReleaseManager, device_id: str, ref: pb.BundleRef, dest: Path) -> Path:
    return transfer.download(ref.location, ref.sha256, ref.size_bytes, dest, device_id=device_id)


def _fetch_https(manager: ReleaseManager, device_id: str, ref: pb.BundleRef, dest: Path) -> Path:
    options = manager.config.fetch_options()
    return http_fetch.download(
        ref.location, ref.sha256, ref.size_bytes, dest, options=options, device_id=device_id
    )


# The fetch methods this edge speaks; any other (FETCH_METHOD_S3: the edge holds no object-store
# credentials) is rejected with unsupported_fetch_method.
FETCHERS: dict[pb.FetchMethod.ValueType, Fetcher] = {
    pb.FETCH_METHOD_GRPC: _fetch_grpc,
    pb.FETCH_METHOD_HTTPS: _fetch_https,
}


class DeployHandler:
    """Executes deploy commands one at a time (a part of the agent: start / stop)."""

    def __init__(self, manager: ReleaseManager, device_id: str, send_ack: AckSink) -> None:
        self.manager = manager
        self.device_id = device_id
        self.send_ack = send_ack
        self._queue: queue.Queue[pb.DeployCommand | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="deploy", daemon=True)

    def submit(self, command: pb.DeployCommand) -> None:
        """Called from the MQTT client's thread: queue the command, return at once."""
        self._queue.put(command)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while (command := self._queue.get()) is not None:
            try:
                self.execute(command)
            except Exception:  # a bug must not stop later commands
                log.exception("deploy command %s failed", command.command_id)

    def execute(self, command: pb.DeployCommand) -> None:
        """Run one command (idempotent on its id) and acknowledge it."""
        if not self.manager.ledger.first_time(command.command_id):
            log.info("deploy command %s was executed before; ignored", command.command_id)
            return
        now = datetime.now(UTC)
        if command.HasField("deadline") and command.deadline.ToDatetime(tzinfo=UTC) < now:
            self._ack(command, pb.DEPLOY_STATUS_EXPIRED)
            return
        self._ack(command, pb.DEPLOY_STATUS_RECEIVED)
        if command.action == pb.DEPLOY_ACTION_ROLLBACK:
            done = self.manager.roll_back("rollback requested by the hub")
            status = pb.DEPLOY_STATUS_ROLLED_BACK if done else pb.DEPLOY_STATUS_REJECTED
            self._ack(command, status, "" if done else "nothing_to_roll_back")
            return
        if command.action not in (pb.DEPLOY_ACTION_INSTALL, pb.DEPLOY_ACTION_ACTIVATE):
            self._ack(command, pb.DEPLOY_STATUS_REJECTED, "unsupported_action")
            return
        ref = command.bundle
        fetch = FETCHERS.get(ref.fetch_method)
        if fetch is None:
            known = ref.fetch_method in pb.FetchMethod.values()
            method = pb.FetchMethod.Name(ref.fetch_method) if known else str(ref.fetch_method)
            supported = ", ".join(pb.FetchMethod.Name(m) for m in FETCHERS)
            self._ack(
                command,
                pb.DEPLOY_STATUS_REJECTED,
                "unsupported_fetch_method",
                f"this edge fetches releases over {supported}, not {method}",
            )
            return
        assert self.manager.slots_dir is not None
        target = self.manager.slots_dir / "downloads" / f"{ref.sha256}.wsrelease"
        self._ack(command, pb.DEPLOY_STATUS_IN_PROGRESS, total=ref.size_bytes)
        try:
            if not target.exists():
                fetch(self.manager, self.device_id, ref, target)
            outcome = self.manager.install(target)
        except ReleaseTransferError as exc:
            self.manager.alert("release_refused", "release download failed", str(exc), ref.sha256)
            self._ack(command, pb.DEPLOY_STATUS_FAILED, "download_failed", str(exc))
            return
        except (WaferscopeError, ReleaseHealthError) as exc:
            self._ack(command, pb.DEPLOY_STATUS_REJECTED, type(exc).__name__, str(exc))
            return
        finally:
            target.unlink(missing_ok=True)
        status = (
            pb.DEPLOY_STATUS_ACTIVATED
            if outcome.state is ReleaseState.ACTIVE
            else pb.DEPLOY_STATUS_INSTALLED
        )
        self._ack(command, status)

    def _ack(
        self,
        command: pb.DeployCommand,
        status: pb.DeployStatus.ValueType,
        code: str = "",
        message: str = "",
        total: int = 0,
    ) -> None:
        slot = self.manager.slot
        ack = pb.DeployAck(
            schema_version=1,
            ack_id=str(uuid.uuid4()),
            command_id=command.command_id,
            device_id=self.device_id,
            sequence=self.manager.ledger.next_ack_sequence(),
            status=status,
            active_model_version=slot.current.version if slot is not None else "",
            bytes_total=total,
        )
        if code:
            ack.error.code, ack.error.message = code, message
        ack.reported_time.GetCurrentTime()
        try:
            self.send_ack(ack)
        except Exception:  # offline: the hub learns the outcome from the next status / report
            log.warning("deploy ack for %s not sent", command.command_id)
