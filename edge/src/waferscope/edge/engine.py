"""A loaded model (verified bundle + warmed-up runner) and the slot that hot-swaps it.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from waferscope.edge.bundles import Bundle, load_bundle
from waferscope.edge.config import ModelConfig
from waferscope.edge.runners import EngineOutputs, Runner, create_runner
from waferscope.protocols.bundle import MANIFEST_NAME, BundleError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Model:
    bundle: Bundle
    runner: Runner
    loaded_at: float

    @property
    def version(self) -> str:
        return self.bundle.model_version

    def infer(self, batch: np.ndarray) -> EngineOutputs:
        outputs = self.runner.run(batch.astype(np.float32, copy=False))
        outputs.check(
            batch.shape[0], len(self.bundle.pattern_classes), len(self.bundle.cause_classes)
        )
        return outputs


def load_model(path: Path | None, config: ModelConfig, cache_dir: Path | None = None) -> Model:
    """Verify a bundle, start its runner and warm it up.

    Raises BundleError (refused bundle) or RunnerUnavailableError (backend missing).
    """
    bundle = load_bundle(path)
    runner = create_runner(bundle, config, cache_dir)
    model = Model(bundle=bundle, runner=runner, loaded_at=time.time())
    shape = bundle.encoding.shape
    for i in range(max(1, config.warmup_runs)):
        n = 1 if i == 0 else min(config.max_batch, 8)
        try:  # also checks the I/O contract against the manifest
            model.infer(np.zeros((n, *shape), dtype=np.float32))
        except BundleError:
            raise
        except Exception as exc:  # the backend's own error types
            runner.close()
            raise BundleError(
                f"bundle {bundle.model_version}: the engine fails on a {n}x{shape} input: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
    return model


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
