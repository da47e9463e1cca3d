"""The parts of one running edge agent, as the composition root (:mod:`.app`) wired them."""

from __future__ import annotations

from dataclasses import dataclass

from waferscope.edge.agent import Agent, Part
from waferscope.edge.config import EdgeConfig
from waferscope.edge.device_info import DeviceInfo
from waferscope.edge.engine import ModelSlot
from waferscope.edge.grpc_ingest import IngestServer
from waferscope.edge.hot_folder import HotFolder
from waferscope.edge.metrics import AgentMetrics
from waferscope.edge.mqtt_link import LinkState, MqttLink
from waferscope.edge.releases import ReleaseManager
from waferscope.edge.store import Store
from waferscope.edge.worker import Worker


@dataclass
class Wiring:
    """The parts of one agent, for the panel, tests and benchmarks to reach."""

    config: EdgeConfig
    agent: Agent
    store: Store
    slot: ModelSlot
    releases: ReleaseManager
    worker: Worker
    metrics: AgentMetrics
    device: DeviceInfo
    link: MqttLink | None
    hot_folder: HotFolder | None
    ingest: IngestServer | None
    panel: Part | None

    @property
    def link_state(self) -> LinkState:
        return self.link.state if self.link is not None else LinkState()
