"""The agent's model: loaded from its configuration, and the slot that hot-swaps it.

:class:`~waferscope.protocols.inference.Model` (verified bundle + warmed-up runner) is
protocols'; what is the agent's is choosing the backend from ``[model]`` and swapping.

The processing worker reads :attr:`ModelSlot.current` once per micro-batch, so a swap takes
effect between batches and never drops or splits a wafer. A new bundle is verified, loaded and
warmed up *before* it replaces the old one; if any of that fails the old model stays and the
error is reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from waferscope.edge.bundles import load_bundle
from waferscope.edge.config import ModelConfig, ReviewConfig
from waferscope.edge.runners import create_runner
from waferscope.protocols.bundle import MANIFEST_NAME
from waferscope.protocols.inference import Model, PipelineSettings, start_model

log = logging.getLogger(__name__)


def load_model(path: Path | None, config: ModelConfig, cache_dir: Path | None = None) -> Model:
    """Verify a bundle (``None``: the shipped one), start the configured runner, warm it up.

    Raises BundleError (refused bundle) or RunnerUnavailableError (backend missing).
    """
    bundle = load_bundle(path)
    runner = create_runner(bundle, config, cache_dir)
    return start_model(bundle, runner, warmup_runs=config.warmup_runs, max_batch=config.max_batch)


def pipeline_settings(model: ModelConfig, review: ReviewConfig) -> PipelineSettings:
    """The shared pipeline's settings from the agent's configuration."""
    return PipelineSettings(
        review_thresholds=review.class_thresholds,
        default_threshold=review.threshold,
        min_quality_score=review.min_quality_score,
        explain=model.explain,
        hot_threshold=model.hot_threshold,
        max_hot_regions=model.max_hot_regions,
        max_batch=model.max_batch,
    )


class ModelSlot:
    """Holds the active model; :meth:`swap` replaces it only with a model that loaded cleanly."""

    def __init__(
        self,
        model: Model,
        config: ModelConfig,
        cache_dir: Path | None = None,
        on_change: Callable[[Model], None] | None = None,
    ) -> None:
        self._model = model
        self._config = config
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._on_change = on_change
        self.last_error: str | None = None

    @property
    def current(self) -> Model:
        return self._model

    def swap(self, path: Path | None) -> Model:
        """Load ``path`` and make it current; on failure keep the old model and re-raise."""
        with self._lock:
            try:
                model = load_model(path, self._config, self._cache_dir)
            except Exception as exc:
                self.last_error = str(exc)
                log.error("model swap refused, keeping %s: %s", self._model.version, exc)
                raise
            old = self._model
            self._model = model
            self.last_error = None
        log.info("model %s replaced %s (%s)", model.version, old.version, model.runner.provider)
        if self._on_change is not None:
            self._on_change(model)
        return model

    def adopt(self, model: Model) -> Model:
        """Make an already loaded and checked model current (a release's committed candidate);
        return the one it replaces."""
        with self._lock:
            old, self._model = self._model, model
            self.last_error = None
        log.info("model %s replaced %s (release commit)", model.version, old.version)
        if self._on_change is not None:
            self._on_change(model)
        return old


class BundleWatcher:
    """Polls a bundle's manifest and swaps the model when it changes (hot swap on deploy)."""

    def __init__(self, slot: ModelSlot, path: Path, interval_s: float = 2.0) -> None:
        self._slot = slot
        self._path = path
        self._interval = interval_s
        self._stop = threading.Event()
        self._seen = self._stamp()
        self._thread = threading.Thread(target=self._loop, name="bundle-watcher", daemon=True)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self._path / MANIFEST_NAME).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            stamp = self._stamp()
            if stamp is None or stamp == self._seen:
                continue
            self._seen = stamp
            time.sleep(min(0.5, self._interval))  # let the deployer finish writing the folder
            try:
                self._slot.swap(self._path)
            except Exception:
                continue
