"""What the agent says about itself: DeviceStatus and DeviceBirth, and the panel's status view."""

from __future__ import annotations

import hashlib
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from waferscope.edge.config import EdgeConfig
from waferscope.edge.engine import ModelSlot
from waferscope.edge.mqtt_link import LinkState
from waferscope.edge.store import Store
from waferscope.protocols.formats import list_formats
from waferscope.protocols.inference import available_providers
from waferscope.protocols.messages import SCHEMA_VERSION
from waferscope.protocols.pb import device_pb2

OUTBOX_BACKLOG = 10_000  # more unpublished messages than this reports the device as degraded
DISK_LOW_FRACTION = 0.05


def agent_version() -> str:
    try:
        return version("waferscope-edge")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class DiskUsage:
    free: int
    total: int


def disk_usage(config: EdgeConfig) -> DiskUsage:
    usage = shutil.disk_usage(config.data_dir if config.data_dir.exists() else ".")
    return DiskUsage(free=usage.free, total=usage.total)


class DeviceInfo:
    def __init__(
        self, config: EdgeConfig, slot: ModelSlot, store: Store, boot_time: datetime
    ) -> None:
        self.config = config
        self.slot = slot
        self.store = store
        self.boot_time = boot_time
        self.last_result: Callable[[], datetime | None] = lambda: None
        self.config_digest = hashlib.sha256(
            config.model_dump_json(exclude={"mqtt": {"password"}}).encode()
        ).hexdigest()

    def degraded_reasons(self) -> list[str]:
        reasons = []
        disk = disk_usage(self.config)
        if disk.total and disk.free / disk.total < DISK_LOW_FRACTION:
            reasons.append("disk_low")
        if self.store.full:
            reasons.append("store_full")
        if self.store.outbox_depth() > OUTBOX_BACKLOG:
            reasons.append("outbox_backlog")
        if self.slot.last_error:
            reasons.append("model_refused")
        return reasons

    def status(
        self, link: LinkState, connection_id: str, state: int, cause: int
    ) -> device_pb2.DeviceStatus:
        model = self.slot.current
        disk = disk_usage(self.config)
        reasons = self.degraded_reasons()
        if state == device_pb2.DEVICE_STATE_ONLINE and reasons:
            state = device_pb2.DEVICE_STATE_DEGRADED
        status = device_pb2.DeviceStatus(
            schema_version=SCHEMA_VERSION,
            device_id=self.config.device_id,
            connection_id=connection_id,
            state=state,  # type: ignore[arg-type]
            cause=cause,  # type: ignore[arg-type]
            agent_version=agent_version(),
            model_version=model.version,
            encoding_version=model.bundle.encoding.version,
            outbox_depth=self.store.outbox_depth(),
            disk_free_bytes=disk.free,
            disk_total_bytes=disk.total,
            degraded_reasons=reasons,
        )
        now = datetime.now(UTC)
        status.since.FromDatetime(link.connected_since or now)
        status.reported_time.FromDatetime(now)
        oldest = self.store.outbox_oldest()
        if oldest is not None:
            status.outbox_oldest_time.FromDatetime(datetime.fromtimestamp(oldest, UTC))
        status.hub_link.connected = link.connected
        status.hub_link.reconnect_count = link.reconnects
        status.hub_link.round_trip_ms = link.round_trip_ms
        if link.connected_since is not None:
            status.hub_link.connected_since.FromDatetime(link.connected_since)
        last = self.last_result()
        if last is not None:
            status.last_result_time.FromDatetime(last)
        return status

    def birth(self, connection_id: str, connected: datetime) -> device_pb2.DeviceBirth:
        model = self.slot.current
        capabilities = ["gradcam"] if self.config.model.explain else []
        if self.config.ingest.hot_folder.enabled:
            capabilities.append("hot-folder")
        if self.config.ingest.grpc.enabled:
            capabilities.append("grpc-ingest")
        if self.config.panel.enabled:
            capabilities.append("panel")
        if self.config.mqtt.include_embedding:
            capabilities.append("embedding")
        birth = device_pb2.DeviceBirth(
            schema_version=SCHEMA_VERSION,
            device_id=self.config.device_id,
            connection_id=connection_id,
            site=self.config.site or "",
            agent_version=agent_version(),
            model_version=model.version,
            encoding_version=model.bundle.encoding.version,
            capabilities=capabilities,
            runtime_providers=available_providers()
            if model.runner.backend == "onnxruntime"
            else [model.runner.provider],
            source_formats=[f.name for f in list_formats()],
            config_digest=self.config_digest,
            platform=f"{platform.system().lower()}-{platform.machine()}",
        )
        birth.boot_time.FromDatetime(self.boot_time)
        birth.connected_time.FromDatetime(connected)
        return birth
