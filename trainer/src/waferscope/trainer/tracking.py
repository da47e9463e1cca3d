"""Experiment tracking with MLflow: a local file store by default, a server when configured.

The default URI is ``file:<cwd>/mlruns``. MLflow 3 keeps its file store in maintenance mode and
refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``; this module sets that variable (when it is
not set already) for ``file:`` URIs only, because a zero-service local store is what a trainer on
one machine needs. Point ``tracking.uri`` at ``http(s)://...`` or ``sqlite:///...`` to use a
server or a database instead. A resumed run continues the same MLflow run (its id is kept in the
checkpoint).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from waferscope.trainer.config import TrackingConfig

log = logging.getLogger(__name__)


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = str(value)[:500]
    return out


class Tracker:
    """Thin wrapper: no-ops when tracking is disabled."""

    def __init__(self, cfg: TrackingConfig) -> None:
        self.cfg = cfg
        self.run_id: str | None = None
        self._mlflow: Any = None

    @property
    def uri(self) -> str:
        return self.cfg.uri or (Path.cwd() / "mlruns").resolve().as_uri()

    def start(self, run_name: str, params: Mapping[str, Any], run_id: str | None = None) -> None:
        if not self.cfg.enabled:
            return
        uri = self.uri
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.cfg.experiment)
        run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        self.run_id = run.info.run_id
        self._mlflow = mlflow
        if run_id is None:
            flat = _flatten(params)
            items = list(flat.items())
            for i in range(0, len(items), 90):
                mlflow.log_params(dict(items[i : i + 90]))
        log.info("MLflow run %s at %s", self.run_id, uri)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self._mlflow is not None:
            clean = {k.replace(" ", "_"): float(v) for k, v in metrics.items()}
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path) -> None:
        if self._mlflow is not None and path.exists():
            self._mlflow.log_artifact(str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status=status)
            self._mlflow = None
