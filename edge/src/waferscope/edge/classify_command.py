"""``waferscope classify FILE...``: the edge pipeline once, without any service.

Prints one JSON object per wafer (``--json``, JSON Lines) or one readable line per wafer. Wafers
are read lazily and classified in batches, so a dataset ``.npz`` with thousands of maps streams
through at engine speed. ``--explain DIR`` writes each wafer's overlay PNG, heatmap (``.npy``,
uint8 on the model-input grid) and hot regions (``.json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from waferscope.edge.blas import limit_blas_threads
from waferscope.edge.config import ModelConfig, ReviewConfig
from waferscope.edge.engine import load_model, pipeline_settings
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.formats import ReadOptions
from waferscope.protocols.inference import (
    Classification,
    Model,
    PipelineSettings,
    WaferRejectedError,
    classification_overlay_png,
    classify_batches,
    read_wafers,
    summary,
)
from waferscope.protocols.wafermap import WaferMap


class ClassifyRun:
    """State of one ``classify`` invocation: the model, the outputs, the failures."""

    def __init__(
        self,
        model: Model,
        *,
        settings: PipelineSettings,
        as_json: bool,
        explain_dir: Path | None,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.model = model
        self.settings = settings
        self.as_json = as_json
        self.explain_dir = explain_dir
        self.out = out
        self.err = err
        self.failures = 0
        self.wafers = 0

    def _wafers(self, files: list[Path], options: ReadOptions) -> Iterator[tuple[WaferMap, float]]:
        for path in files:
            try:
                yield from read_wafers(str(path), options)
            except WaferscopeError as exc:
                self._fail(str(exc))
            except OSError as exc:
                self._fail(f"{path}: {exc.strerror or exc}")

    def _rejected(self, exc: WaferRejectedError) -> None:
        self._fail(str(exc))

    def _fail(self, message: str) -> None:
        self.failures += 1
        print(f"waferscope: error: {message}", file=self.err, flush=True)

    def run(self, files: list[Path], options: ReadOptions) -> int:
        if self.explain_dir is not None:
            self.explain_dir.mkdir(parents=True, exist_ok=True)
        wafers = self._wafers(files, options)
        for chunk in classify_batches(self.model, wafers, self.settings, self._rejected):
            for item in chunk:
                self._emit(item)
            self.out.flush()
        return 1 if self.failures else 0

    def _emit(self, item: Classification) -> None:
        self.wafers += 1
        doc = summary(item)
        if self.explain_dir is not None and item.heatmap is not None:
            doc["explain"] = self._explain(item)
        if self.as_json:
            self.out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
            return
        flag = "  REVIEW" if item.review else ""
        ident = "/".join(str(v) for v in (doc["lot_id"], doc["wafer_id"]) if v) or "-"
        self.out.write(
            f"{doc['source']}#{doc['index']}  {ident}  {item.pattern.name:<10} "
            f"{item.confidence:6.1%}  cause {item.cause.name}{flag}\n"
        )

    def _explain(self, item: Classification) -> dict[str, str]:
        assert self.explain_dir is not None
        assert item.heatmap is not None
        wafer = item.wafer
        stem = f"{Path(wafer.provenance.source).name}-{wafer.provenance.wafer_index:05d}"
        png = self.explain_dir / f"{stem}.overlay.png"
        png.write_bytes(classification_overlay_png(item))
        heat = self.explain_dir / f"{stem}.heatmap.npy"
        np.save(heat, item.heatmap)
        regions = self.explain_dir / f"{stem}.regions.json"
        regions.write_text(
            json.dumps([r.to_dict() for r in item.regions], separators=(",", ":")) + "\n",
            encoding="utf-8",
        )
        return {"overlay": str(png), "heatmap": str(heat), "regions": str(regions)}


def classify_files(
    files: list[Path],
    *,
    model_path: Path | None,
    settings: ModelConfig,
    review: ReviewConfig | None = None,
    as_json: bool = False,
    explain_dir: Path | None = None,
    options: ReadOptions | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Classify files and print the results; the exit status (1 when any input failed)."""
    limit_blas_threads(1)
    model = load_model(model_path, settings)
    run = ClassifyRun(
        model,
        settings=pipeline_settings(settings, review or ReviewConfig()),
        as_json=as_json,
        explain_dir=explain_dir,
        out=out or sys.stdout,
        err=err or sys.stderr,
    )
    return run.run(files, options or ReadOptions())
