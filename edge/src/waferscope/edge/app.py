"""Composition root: builds every part of an agent from its configuration and wires them.

Nothing here decides behaviour; each part's module does. ``run_agent`` is what
``waferscope edge run`` calls.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from waferscope.edge.agent import Agent, Part
from waferscope.edge.alerts import AlertEngine
from waferscope.edge.blas import limit_blas_threads
from waferscope.edge.config import EdgeConfig
from waferscope.edge.config_loader import load_config
from waferscope.edge.deploy import DeployHandler
from waferscope.edge.device_info import DeviceInfo
from waferscope.edge.engine import BundleWatcher, ModelSlot, load_model
from waferscope.edge.grpc_ingest import IngestServer, TesterIngestService
from waferscope.edge.hot_folder import HotFolder
from waferscope.edge.labels import record_label
from waferscope.edge.metrics import AgentMetrics
from waferscope.edge.mqtt_link import MqttLink
from waferscope.edge.releases import ReleaseManager
from waferscope.edge.store import Store
from waferscope.edge.wiring import Wiring
from waferscope.edge.worker import Worker
from waferscope.protocols import tracing
from waferscope.protocols.inference import Model
from waferscope.protocols.settings import observability

log = logging.getLogger("waferscope.edge")

__all__ = ["Wiring", "build_agent", "configure_logging", "configure_tracing", "run_agent"]


def build_agent(config: EdgeConfig) -> Wiring:
    limit_blas_threads(1)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = AgentMetrics()
    assert config.store.path is not None
    store = Store(
        config.store.path,
        max_bytes=config.store.max_bytes,
        prune_to=config.store.prune_to,
        synchronous=config.store.synchronous.upper(),
    )
    cache = config.data_dir / "engine-cache"

    def model_changed(model: Model) -> None:
        metrics.set_model(
            model.version, model.runner.provider, model.bundle.encoding.version, model.loaded_at
        )

    alerts = AlertEngine(config.alerts.rules, config.device_id)
    releases = ReleaseManager(config.release, config.model, store, alerts, cache_dir=cache)
    model = releases.load_startup_model(load_model)
    slot = ModelSlot(model, config.model, cache, on_change=model_changed)
    releases.bind(slot)
    model_changed(model)
    device = DeviceInfo(config, slot, store, datetime.now(UTC))
    alerts.seed(
        (
            r["tester_id"] or "",
            r["pattern"] or "",
            r["result_id"],
            r["review_reason"] == "REVIEW_REASON_LOW_CONFIDENCE",
        )
        for r in reversed(store.recent_results(limit=200))
    )
    link = None
    if config.mqtt.enabled:
        link = MqttLink(
            config.mqtt,
            device_id=config.device_id,
            site=config.site,
            store=store,
            metrics=metrics,
            status=device.status,
            birth=device.birth,
        )
    deploys = None
    if link is not None:
        releases.on_report = link.publish_shadow_report
        deploys = DeployHandler(releases, config.device_id, link.publish_deploy_ack)
        link.on_command = deploys.submit
        link.on_label = partial(record_label, store)
    worker = Worker(
        config,
        slot,
        store,
        alerts,
        metrics,
        on_committed=link.wake if link else lambda: None,
        classify=releases.classify,
    )
    device.last_result = lambda: worker.last_result_time

    def link_up() -> float:
        return 1.0 if link is not None and link.state.connected else 0.0

    metrics.bind(lambda: float(store.outbox_depth()), lambda: float(store.used_bytes()), link_up)
    # started in this order, stopped in reverse: ingest stops first, then the worker finishes
    # its batch, then the link drains and says goodbye
    parts: list[tuple[str, Part]] = []
    if link is not None:
        parts.append(("mqtt", link))
    parts.append(("worker", worker))
    if deploys is not None:
        parts.append(("deploy", deploys))
    hot = None
    if config.ingest.hot_folder.enabled:
        hot = HotFolder(config.ingest.hot_folder, worker, store, config.tester_id)
        parts.append(("hot-folder", hot))
    ingest = None
    if config.ingest.grpc.enabled:
        service = TesterIngestService(worker, store, config.ingest.grpc, config.tester_id)
        ingest = IngestServer(service, config.ingest.grpc)
        parts.append(("grpc", ingest))
    if config.model.watch:
        parts.append(("bundle-watcher", BundleWatcher(slot, model.bundle.folder)))
    wiring = Wiring(
        config=config,
        agent=Agent(parts, closers=[("store", store.close)]),
        store=store,
        slot=slot,
        releases=releases,
        worker=worker,
        metrics=metrics,
        device=device,
        link=link,
        hot_folder=hot,
        ingest=ingest,
        panel=None,
    )
    if config.panel.enabled:
        from waferscope.edge.panel import PanelServer

        wiring.panel = PanelServer(wiring)
        parts.append(("panel", wiring.panel))
    return wiring


def configure_logging(config: EdgeConfig) -> None:
    """Logs to stderr as text or JSON lines (docs/observability.md)."""
    observability.start_logging(
        "edge", config.log_level, config.log_format, static={"device_id": config.device_id}
    )


def configure_tracing(config: EdgeConfig) -> bool:
    """Install the tracer provider the ``[tracing]`` section asks for; True when on."""
    return observability.start_tracing(config.tracing, role="edge", instance=config.device_id)


def run_agent(config_path: Path) -> int:
    loaded = load_config(config_path)
    configure_logging(loaded.config)
    if loaded.overrides:
        log.info("environment overrides: %s", ", ".join(loaded.overrides))
    configure_tracing(loaded.config)
    try:
        wiring = build_agent(loaded.config)
        return wiring.agent.run_until_signal()
    finally:
        tracing.shutdown_tracing()  # export the spans still buffered
