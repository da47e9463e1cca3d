"""The rollout engine: a thread of the hub process that carries rollouts from wave to wave.

It owns an MQTT client of its own (persistent session, so answers sent while the hub was down
arrive when it returns) that publishes one ``DeployCommand`` per device on its ``deploy`` topic
(QoS 1, never retained) and subscribes to ``deploy-ack`` and ``shadow-report``; and the
BundleTransfer gRPC service edges fetch release files from (read from the blob store through a
local cache folder). Every ``rollout_tick_s`` it reads each running rollout from the database and
does the next thing: open a wave, re-send commands to devices that came back online, weigh the
wave's gates, roll back — so a hub killed at any point resumes where its database stands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from sqlalchemy.orm import Session

from waferscope.hub.db.engine import Database, utcnow
from waferscope.hub.db.schema import Device, Release, Rollout, RolloutDevice
from waferscope.hub.ingest.mqtt import make_client
from waferscope.hub.rollout import plan
from waferscope.hub.rollout.store import devices_of, record_ack, record_report
from waferscope.hub.rules import hub_alert_row
from waferscope.hub.store.alerts import enqueue_deliveries, insert_alerts
from waferscope.protocols import messages, topics
from waferscope.protocols.pb import deploy_pb2 as pb
from waferscope.protocols.pb import transfer_pb2
from waferscope.protocols.pb.release_pb2 import ShadowReport
from waferscope.protocols.release.transfer import ReleaseFileServicer, serve_servicer
from waferscope.protocols.topics import TopicKind

if TYPE_CHECKING:
    from waferscope.hub.blobs import BlobStore
    from waferscope.hub.config import HubConfig

log = logging.getLogger("waferscope.hub.rollout")


class BlobReleaseServicer(ReleaseFileServicer):
    """Serves registered release files by SHA-256, copied from the blob store into a cache."""

    def __init__(self, db: Database, blobs: BlobStore, cache: Path) -> None:
        super().__init__(cache)
        self.db, self.blobs = db, blobs
        self.bytes_sent = 0  # release bytes streamed to edges since the start (benchmarks/)
        self._count = threading.Lock()
        cache.mkdir(parents=True, exist_ok=True)

    def Download(  # noqa: N802 (gRPC method name)
        self, request: transfer_pb2.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.BundleChunk]:
        for chunk in super().Download(request, context):
            with self._count:
                self.bytes_sent += len(chunk.data)
            yield chunk

    def _find(self, sha256: str) -> Path | None:
        path = self.folder / f"{sha256}.wsrelease"
        if path.is_file():
            return path
        with self.db.session() as s:
            blob = s.scalar(select(Release.blob).where(Release.sha256 == sha256))
        if blob is None:
            return None
        part = path.with_name(f".{path.name}.{threading.get_ident()}")
        part.write_bytes(self.blobs.get(blob))
        part.replace(path)
        return path


class RolloutEngine:
    """Advances every running rollout (one per hub installation: worker 0 runs it)."""

    def __init__(
        self,
        config: HubConfig,
        db: Database,
        blobs: BlobStore,
        channels: list[tuple[str, str]],
    ) -> None:
        self.config = config
        self.db = db
        self.blobs = blobs
        self.channels = channels
        self.tick_s = config.releases.rollout_tick_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: grpc.Server | None = None
        self.servicer: BlobReleaseServicer | None = None
        self.transfer_address = ""
        self.connected = threading.Event()
        self.client = make_client(config.mqtt, f"{config.mqtt.client_id}-rollout", manual_ack=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        rc = self.config.releases
        self.servicer = BlobReleaseServicer(
            self.db, self.blobs, self.config.data_dir / "release-cache"
        )
        self._server, port = serve_servicer(self.servicer, rc.transfer_bind)
        host = rc.transfer_bind.rsplit(":", 1)[0]
        self.transfer_address = rc.transfer_advertise or f"{host}:{port}"
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.mqtt.session_expiry_s
        self.client.connect_async(
            self.config.mqtt.host,
            self.config.mqtt.port,
            keepalive=self.config.mqtt.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hub-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()
        if self._server is not None:
            self._server.stop(grace=1)

    def wake(self) -> None:
        """Advance now (after a manual action) instead of at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self.step(resend_unanswered=first)
                first = False
            except Exception:  # one bad round must not end the engine
                log.exception("rollout step failed")
            self._wake.wait(self.tick_s)
            self._wake.clear()

    # ------------------------------------------------------------------ MQTT
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the rollout engine: %s", rc)
            return
        opts = SubscribeOptions(qos=1)
        client.subscribe(
            [
                (topics.subscription(TopicKind.DEPLOY_ACK), opts),
                (topics.subscription(TopicKind.SHADOW_REPORT), opts),
            ]
        )
        self.connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            address, message = messages.decode_topic(msg.topic, msg.payload)
        except Exception as exc:  # malformed: the ingest dead-letters it; nothing to do here
            log.warning("rollout engine ignores %s: %s", msg.topic, exc)
            return
        with self.db.session(write=True) as s:
            if address.kind is TopicKind.DEPLOY_ACK:
                assert isinstance(message, pb.DeployAck)
                record_ack(s, message)
            elif address.kind is TopicKind.SHADOW_REPORT:
                assert isinstance(message, ShadowReport)
                record_report(s, message)
        self._wake.set()

    def _publish(self, site: str | None, command: pb.DeployCommand) -> None:
        topic = topics.deploy_topic(command.device_id, site=site)
        self.client.publish(topic, messages.encode(command), qos=1, retain=False)

    # ------------------------------------------------------------------ the step
    def step(self, *, resend_unanswered: bool = False) -> None:
        """One round over every running rollout."""
        with self.db.session() as s:
            running = list(
                s.scalars(
                    select(Rollout.rollout_id).where(
                        Rollout.state.in_(
                            [plan.PENDING, plan.IN_PROGRESS, plan.ROLLING_BACK, plan.ROLLED_BACK]
                        )
                    )
                )
            )
        for rollout_id in running:
            with self.db.session(write=True) as s:
                self._advance(s, rollout_id, resend_unanswered)

    def _advance(self, s: Session, rollout_id: str, resend_unanswered: bool) -> None:
        row = s.get(Rollout, rollout_id)
        if row is None:
            return
        release = s.get(Release, row.release_id)
        assert release is not None
        devices = devices_of(s, rollout_id)
        sites = dict(
            s.execute(
                select(Device.device_id, Device.site).where(
                    Device.device_id.in_([d.device_id for d in devices])
                )
            ).all()
        )
        now = utcnow()
        if row.state in (plan.ROLLING_BACK, plan.ROLLED_BACK):
            self._roll_back(s, row, devices, sites, now)
            return
        if row.state == plan.PENDING:
            row.state, row.wave, row.wave_started_at = plan.IN_PROGRESS, 0, now
        self._resend(s, row, release, devices, sites, now, resend_unanswered)
        for d in devices:  # open the current wave (and any earlier one left waiting)
            if d.state == plan.WAITING and d.wave <= row.wave:
                self._send_install(row, release, d, sites.get(d.device_id), now)
        waves = len(row.waves)
        if row.wave >= waves:  # every wave passed: wait for devices that were away
            if all(d.state in plan.SETTLED for d in devices):
                row.state, row.reason = plan.COMPLETED, "every wave passed"
            row.updated_at = now
            return
        current = [d for d in devices if d.wave == row.wave]
        settled = [d for d in current if d.state in plan.SETTLED]
        timeout = timedelta(seconds=float(row.gates.get("wave_timeout_s", 900)))
        timed_out = row.wave_started_at is not None and now - row.wave_started_at > timeout
        if len(settled) < len(current) and not (timed_out and settled):
            return
        gates = plan.GateSettings.model_validate(row.gates)
        outcome = plan.evaluate_gates([figures(d) for d in settled], gates)
        results = list(row.wave_results or [])
        results.append(
            {
                "wave": row.wave + 1,
                "passed": outcome.passed,
                **outcome.figures,
                "reason": outcome.reason(),
                "at": now.isoformat() + "Z",
            }
        )
        row.wave_results = results
        row.updated_at = now
        if outcome.passed:
            log.info("rollout %s: wave %d passed (%s)", rollout_id, row.wave + 1, outcome.figures)
            row.wave += 1
            row.wave_started_at = now
            if row.wave >= waves and all(d.state in plan.SETTLED for d in devices):
                row.state, row.reason = plan.COMPLETED, "every wave passed"
            return
        row.state = plan.ROLLING_BACK
        row.reason = f"wave {row.wave + 1} failed its gates: {outcome.reason()}"
        log.warning("rollout %s: %s", rollout_id, row.reason)
        self._alert(s, row, release)
        self._roll_back(s, row, devices, sites, now)

    def _resend(
        self,
        s: Session,
        row: Rollout,
        release: Release,
        devices: list[RolloutDevice],
        sites: dict[str, str | None],
        now: datetime,
        all_unanswered: bool,
    ) -> None:
        """Commands nobody answered go again to devices that came online since they were sent
        (and to every such device when the engine starts): the edge runs a command id once."""
        waiting = [d for d in devices if d.state == plan.SENT]
        if not waiting:
            return
        seen = {
            dev.device_id: dev
            for dev in s.scalars(
                select(Device).where(Device.device_id.in_([d.device_id for d in waiting]))
            )
        }
        for d in waiting:
            dev = seen.get(d.device_id)
            back = (
                dev is not None
                and dev.state == "online"
                and dev.state_since is not None
                and d.sent_at is not None
                and dev.state_since > d.sent_at
            )
            if all_unanswered or back:
                self._send_install(row, release, d, sites.get(d.device_id), now)

    def _send_install(
        self, row: Rollout, release: Release, d: RolloutDevice, site: str | None, now: datetime
    ) -> None:
        if d.command_id is None:
            d.command_id = messages.new_message_id()
            d.attempts = (d.attempts or 0) + 1
        spec = row.waves[min(d.wave, len(row.waves) - 1)]
        cmd = pb.DeployCommand(
            schema_version=1,
            command_id=d.command_id,
            device_id=d.device_id,
            action=pb.DEPLOY_ACTION_INSTALL,
            bundle=pb.BundleRef(
                model_version=release.model_version,
                sha256=release.sha256,
                size_bytes=int(release.size_bytes),
                fetch_method=pb.FETCH_METHOD_GRPC,
                location=self.transfer_address,
            ),
            canary=pb.CanaryPolicy(
                rollout_id=row.rollout_id,
                cohort="canary" if d.wave == 0 else f"wave-{d.wave + 1}",
                percentage=float(spec.get("percent", 0.0)),
            ),
        )
        cmd.issued_time.FromDatetime(now.replace(tzinfo=UTC))
        self._publish(site, cmd)
        d.state, d.sent_at, d.updated_at = plan.SENT, now, now

    def _roll_back(
        self,
        s: Session,
        row: Rollout,
        devices: list[RolloutDevice],
        sites: dict[str, str | None],
        now: datetime,
    ) -> None:
        """ROLLBACK to every device running the release; rolled back when none is left."""
        for d in devices:
            if d.state not in plan.MOVED and not (
                d.state == plan.ROLLBACK_SENT
                and d.rollback_command_id is not None
                and self._came_back(s, d)
            ):
                continue
            if d.rollback_command_id is None or d.state in plan.MOVED:
                d.rollback_command_id = messages.new_message_id()
            cmd = pb.DeployCommand(
                schema_version=1,
                command_id=d.rollback_command_id,
                device_id=d.device_id,
                action=pb.DEPLOY_ACTION_ROLLBACK,
                rollback_to_version=d.previous_model_version or "",
                canary=pb.CanaryPolicy(rollout_id=row.rollout_id, cohort="rollback"),
            )
            cmd.issued_time.FromDatetime(now.replace(tzinfo=UTC))
            self._publish(sites.get(d.device_id), cmd)
            d.state, d.sent_at, d.updated_at = plan.ROLLBACK_SENT, now, now
        if row.state == plan.ROLLING_BACK and not any(
            d.state in plan.MOVED or d.state == plan.ROLLBACK_SENT for d in devices
        ):
            row.state = plan.ROLLED_BACK
        row.updated_at = now

    def _came_back(self, s: Session, d: RolloutDevice) -> bool:
        dev = s.get(Device, d.device_id)
        return bool(
            dev is not None
            and dev.state == "online"
            and dev.state_since is not None
            and d.sent_at is not None
            and dev.state_since > d.sent_at
        )

    def _alert(self, s: Session, row: Rollout, release: Release) -> None:
        now = utcnow()
        alert = hub_alert_row(
            rule_id="rollout_gate",
            kind="rollout",
            severity="critical",
            title=f"rollout of release {release.version} ({release.model_version}) rolled back",
            message=row.reason,
            now=now,
            dedup_key=f"rollout_gate:{row.rollout_id}",
            pattern="",
            related=[],
        )
        conn = s.connection()
        new = insert_alerts(conn, [alert])
        if new and self.channels:
            enqueue_deliveries(conn, [(str(alert["alert_id"]), "critical")], self.channels)


def figures(d: RolloutDevice) -> plan.DeviceFigures:
    """A device's gate figures from its last shadow report."""
    r = d.report or {}
    return plan.DeviceFigures(
        state=d.state,
        wafers=int(r.get("wafers", 0)),
        agreements=int(r.get("agreements", 0)),
        current_confidence=plan.histogram_mean(
            [int(x) for x in r.get("activeConfidenceHistogram", [])]
        ),
        new_confidence=plan.histogram_mean(
            [int(x) for x in r.get("candidateConfidenceHistogram", [])]
        ),
        new_latency_ms=float(r["candidateMeanLatencyMs"])
        if "candidateMeanLatencyMs" in r
        else None,
    )
