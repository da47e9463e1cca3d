"""Evaluate a bundle (its INT8 engine, or the FP32 reference) or a checkpoint on labelled maps.

Any labelled input works: the dataset archives, or any wafer-map file whose wafers carry labels
(they are read, normalised and encoded through protocols exactly as the edge does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from waferscope.protocols import bundle as contract
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole, BundleManifest
from waferscope.trainer.data import load_labelled
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.metrics import Metrics, compute_metrics

EngineChoice = Literal["int8", "fp32"]


@dataclass
class Evaluation:
    model: str
    engine: str
    metrics: Metrics
    skipped: int


def _bundle_multi_label(folder: Path, manifest: BundleManifest) -> bool:
    for f in manifest.files:
        if f.role == BundleFileRole.BUNDLE_FILE_ROLE_CONFIG and f.path.endswith("model.json"):
            doc = json.loads((folder / f.path).read_text(encoding="utf-8"))
            return bool(doc.get("multi_label", False))
    return False


def evaluate(
    model: Path,
    data: list[Path],
    *,
    engine: EngineChoice = "int8",
    threads: int = 2,
    batch_size: int = 256,
) -> Evaluation:
    """Metrics of ``model`` (bundle folder, its manifest.json, or a .pt checkpoint) on ``data``."""
    if model.suffix == ".pt":
        return _evaluate_checkpoint(model, data, batch_size)
    folder = model.parent if model.name == contract.MANIFEST_NAME else model
    manifest = contract.verify(folder)
    spec = contract.encoding_of(manifest)
    role = (
        BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX
        if engine == "int8"
        else BundleFileRole.BUNDLE_FILE_ROLE_REFERENCE_ONNX
    )
    path = folder / contract.file_for_role(manifest, role)
    multi = _bundle_multi_label(folder, manifest)
    labelled = load_labelled(data, class_names=list(manifest.pattern_classes), multi_label=multi)
    probs, _ = OnnxEngine(path, threads=threads).predict(
        labelled.grids, spec, multi_label=multi, batch_size=batch_size
    )
    metrics = compute_metrics(labelled.targets, probs, labelled.class_names, multi)
    return Evaluation(manifest.model_version, path.name, metrics, labelled.skipped)


def _evaluate_checkpoint(path: Path, data: list[Path], batch_size: int) -> Evaluation:
    import torch

    from waferscope.trainer.export import load_checkpoint
    from waferscope.trainer.runtime import Runtime, predict

    lm = load_checkpoint(path)
    labelled = load_labelled(data, class_names=lm.class_names, multi_label=lm.multi_label)
    rt = Runtime(torch.device("cpu"), "fp32")
    probs, _ = predict(lm.model, labelled.grids, lm.spec, rt, batch_size, lm.multi_label)
    metrics = compute_metrics(labelled.targets, probs, labelled.class_names, lm.multi_label)
    return Evaluation(str(path), "torch fp32", metrics, labelled.skipped)
