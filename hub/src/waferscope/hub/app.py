"""The composition root: builds the hub's parts from a configuration and wires them together.

Nothing here decides anything; each part lives in its own module. ``Hub`` owns the database, the
blob store, the metrics, the ingest worker, the notifier, the rule runner, the drift job, the
rollout engine, the federation control and the web app.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from waferscope.hub.auth import TokenIssuer, load_or_create_secret
from waferscope.hub.blobs import BlobStore, open_blob_store
from waferscope.hub.config import HubConfig
from waferscope.hub.db import migrate
from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import DriftSnapshot
from waferscope.hub.drift.job import DriftMonitor
from waferscope.hub.drift.report import DriftCollector, latest
from waferscope.hub.federation.candidate import CandidateRegistrar
from waferscope.hub.federation.control import FederationControl
from waferscope.hub.federation.scheduler import RoundScheduler
from waferscope.hub.ingest.handler import BatchWriter
from waferscope.hub.ingest.label_publisher import LabelPublisher
from waferscope.hub.ingest.mqtt import MqttIngest
from waferscope.hub.metrics import HubMetrics
from waferscope.hub.notify.channels import build_channels
from waferscope.hub.notify.worker import Notifier
from waferscope.hub.releases import load_roots
from waferscope.hub.review_policy import QueueSelector, build_selector
from waferscope.hub.rollout.engine import RolloutEngine
from waferscope.hub.rules import RuleRunner
from waferscope.hub.similar import SimilarWafers
from waferscope.hub.upload import EngineClassifier, UnclassifiedPipeline, WaferClassifier

if TYPE_CHECKING:
    from litestar import Litestar

    from waferscope.hub.explain import ShapExplainer

log = logging.getLogger("waferscope.hub")


class Hub:
    """Every part of one hub process, built from one configuration."""

    def __init__(
        self,
        config: HubConfig,
        *,
        worker: int = 0,
        selector: QueueSelector | None = None,
        classifier: WaferClassifier | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.db = Database(config.database_url, config.database)
        if config.database.migrate_on_start and worker == 0:
            migrate.upgrade(self.db.engine)
        self.blobs: BlobStore = open_blob_store(config.blobs, config.blob_path)
        self.metrics = HubMetrics()
        self.metrics.bind_database(self.db)  # devices and review queue, read per scrape
        self.selector = selector or build_selector(config.review)
        self.channels = build_channels(config.notify)
        self.writer = BatchWriter(
            self.db,
            self.blobs,
            self.selector,
            self.metrics,
            channels=[(c.name, c.min_severity) for c in self.channels],
            store_embeddings=config.ingest.store_embeddings,
            dead_letter_bytes=config.ingest.dead_letter_max_bytes,
            commit_log=(
                config.ingest.commit_log.with_suffix(f".w{worker}.log")
                if config.ingest.commit_log
                else None
            ),
        )
        self.ingest = (
            MqttIngest(
                config.mqtt,
                config.ingest,
                self.writer,
                self.metrics,
                worker=worker,
                group=config.subscription_group,
            )
            if config.mqtt.enabled
            else None
        )
        self.labels = (
            LabelPublisher(self.db, config.mqtt) if config.mqtt.enabled and worker == 0 else None
        )
        self.federation = FederationControl(config.federation, config.data_dir)
        self.rounds = RoundScheduler(self.db, self.federation)
        self.notifier = Notifier(self.db, self.channels, config.notify, self.metrics)
        self.rules = RuleRunner(self.db, config.alerts, self.channels, self.metrics)
        self.drift = DriftMonitor(
            self.db,
            config.drift,
            [(c.name, c.min_severity) for c in self.channels],
            on_alert=lambda rule: self.metrics.hub_alerts.labels(rule=rule).inc(),
        )
        self.metrics.registry.register(DriftCollector(self._latest_drift))
        secret = (
            config.auth.jwt_secret.get_secret_value()
            if config.auth.jwt_secret is not None
            else load_or_create_secret(config.data_dir / "jwt.secret")
        )
        self.tokens = TokenIssuer(secret, config.auth.token_ttl_s)
        self.similar = SimilarWafers(self.db)
        self.classifier: WaferClassifier = classifier or (
            EngineClassifier(config.engine, config.review)
            if config.engine.bundle is not None
            else UnclassifiedPipeline()
        )
        self._explainer: ShapExplainer | None = None
        self.release_roots = load_roots(config.releases.trusted_root_keys)
        self.federation.candidate_registrar = CandidateRegistrar(
            config.federation,
            self.db,
            self.blobs,
            self.release_roots,
            max_bytes=config.releases.max_release_bytes,
        )
        # rollouts need releases (trusted roots), the broker and the transfer service
        self.rollouts = (
            RolloutEngine(
                config, self.db, self.blobs, [(c.name, c.min_severity) for c in self.channels]
            )
            if self.release_roots and config.mqtt.enabled and config.releases.transfer_bind
            else None
        )

    def _latest_drift(self) -> list[DriftSnapshot]:
        with self.db.session() as s:
            return list(latest(s))

    @property
    def explainer(self) -> ShapExplainer | None:
        """SHAP over wafer regions on the hub's copy of the engine (None without a bundle)."""
        if self._explainer is None and self.config.engine.bundle is not None:
            from waferscope.hub.explain import ShapExplainer

            self._explainer = ShapExplainer(self.config.engine)
        return self._explainer

    def web_app(self) -> Litestar:
        from waferscope.hub.web.app import create_app

        return create_app(self)

    def start_background(self, *, ingest: bool = True, services: bool = True) -> None:
        """Start the ingest worker and (worker 0) the notifier and the rule runner."""
        self.db.start_checkpointer()
        if ingest and self.ingest is not None:
            self.ingest.start()
        if services and self.worker == 0:
            if self.labels is not None:
                self.labels.start()
            if self.config.federation.enabled:
                self.federation.start()
                self.rounds.start()
            self.notifier.start()
            self.rules.start()
            if self.config.drift.enabled:
                self.drift.start()
            self.similar.start()
            if self.rollouts is not None:
                self.rollouts.start()

    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        if self.labels is not None:
            self.labels.stop()
        self.rounds.stop()
        self.federation.stop()
        self.notifier.stop()
        self.rules.stop()
        self.drift.stop()
        self.similar.stop()
        if self.rollouts is not None:
            self.rollouts.stop()
        self.db.dispose()

    def ready(self) -> dict[str, bool]:
        """What /readyz reports: database reachable and migrated, blobs usable, broker link."""
        checks = {"database": self.db.ping()}
        checks["schema"] = checks["database"] and migrate.is_current(self.db.engine)
        try:
            self.blobs.check()
            checks["blobs"] = True
        except Exception:  # readiness: any failure means "not ready"
            checks["blobs"] = False
        if self.ingest is not None:
            checks["mqtt"] = self.ingest.connected.is_set()
        return checks
