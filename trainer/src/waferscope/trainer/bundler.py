"""Engine bundles from checkpoints: export, INT8 quantisation, parity, metrics, manifest, card.

``build_bundle`` turns a trained checkpoint into the folder the hub signs and pushes and the edge
loads (layout and engine I/O: :mod:`waferscope.protocols.bundle`):

============================  ===============  ==============================================
file                          role             content
============================  ===============  ==============================================
``model.int8.onnx``           ENGINE_ONNX      QDQ INT8 engine, calibrated on training maps
``model.fp32.onnx``           REFERENCE_ONNX   only with ``include_fp32`` (size)
``head.npz``                  HEAD_WEIGHTS     FP32 head for Grad-CAM (``HeadWeights``)
``taxonomy.toml``             CONFIG           the root-cause taxonomy the cause head learnt
``model.json``                CONFIG           architecture, output activation, training config
``metrics.json``              DOCUMENT         FP32 and INT8 metrics on the validation maps
``confusion_matrix.png``      DOCUMENT         INT8 confusion matrix on the validation maps
``MODEL_CARD.md``             DOCUMENT         data, command, seed, metrics, limitations
============================  ===============  ==============================================

``manifest.json`` lists every file with its size, role and sha256.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waferscope.protocols import bundle as contract
from waferscope.protocols.messages import SCHEMA_VERSION
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole, BundleManifest
from waferscope.trainer import __version__
from waferscope.trainer.calibration import apply_temperature, fit_temperature
from waferscope.trainer.card import ModelCardInput, render_model_card
from waferscope.trainer.config import TtaMode
from waferscope.trainer.data import LabelledData, load_labelled
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.export import LoadedModel, check_export, export_onnx, load_checkpoint
from waferscope.trainer.metrics import confusion_png
from waferscope.trainer.quantize import (
    CalibrationMethod,
    ParityReport,
    calibration_grids,
    calibration_tensor,
    parity,
    quantize_int8,
)
from waferscope.trainer.tta import describe, tta_file

log = logging.getLogger(__name__)

ENGINE = "model.int8.onnx"
REFERENCE = "model.fp32.onnx"
HEAD = "head.npz"
TAXONOMY = "taxonomy.toml"
MODEL_JSON = "model.json"
METRICS = "metrics.json"
CONFUSION = "confusion_matrix.png"
CARD = "MODEL_CARD.md"


@dataclass
class BundleResult:
    folder: Path
    manifest: BundleManifest
    parity: ParityReport | None
    seconds: float


def _model_json(lm: LoadedModel, temperature: float, tta: TtaMode) -> dict[str, Any]:
    return {
        "architecture": "timm backbone -> global average pool -> dense(ReLU) -> two heads",
        "backbone": lm.config.model.backbone,
        "backbone_kwargs": lm.config.model.backbone_kwargs,
        "output_stride": lm.config.model.output_stride,
        "hidden": lm.config.model.hidden,
        "multi_label": lm.multi_label,
        "pattern_activation": "sigmoid" if lm.multi_label else "softmax",
        "pattern_threshold": 0.5 if lm.multi_label else None,
        "pattern_temperature": temperature,
        "pattern_temperature_note": "already folded into the pattern layer of the engine and "
        "head.npz; do not apply it again",
        "cause_activation": "softmax",
        "outputs": list(contract.OUTPUT_NAMES),
        "test_time_augmentation": describe(tta),
        "parameters": sum(p.numel() for p in lm.model.parameters()),
        "checkpoint_epoch": lm.meta.get("epoch"),
        "training_config": lm.config.to_dict(),
        "producer": f"waferscope-trainer {__version__}",
    }


def _run_info(checkpoint: Path) -> dict[str, Any]:
    """summary.json and history.jsonl of the run the checkpoint belongs to (when present)."""
    info: dict[str, Any] = {}
    summary = checkpoint.parent / "summary.json"
    history = checkpoint.parent / "history.jsonl"
    if summary.is_file():
        info["summary"] = json.loads(summary.read_text(encoding="utf-8"))
    if history.is_file():
        rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        # A resumed run may repeat epochs; keep the last record of each.
        by_epoch = {int(r["epoch"]): r for r in rows}
        info["history"] = [by_epoch[k] for k in sorted(by_epoch)]
    return info


def build_bundle(
    checkpoint: Path,
    output: Path,
    *,
    val: list[Path] | None = None,
    calibration: list[Path] | None = None,
    include_fp32: bool = False,
    model_version: str | None = None,
    method: CalibrationMethod = "minmax",
    command: str | None = None,
    threads: int = 2,
    temperature: bool = True,
    tta: TtaMode | None = None,
) -> BundleResult:
    """Export, quantise, evaluate and package ``checkpoint`` into the folder ``output``.

    ``val`` (default: the run's validation files) gives the metrics and the parity report;
    ``calibration`` (default: the run's training files) gives the INT8 calibration maps.
    ``temperature``: fit a softmax/sigmoid temperature on ``val`` and fold it into the pattern
    head (:mod:`.calibration`) before export.
    ``tta`` (default: the config's ``export.tta``): 'd4' bakes the 8-view averaging of
    :mod:`.tta` into both engines after quantisation; the temperature is fitted on the averaged
    logits and parity and metrics are those of the averaged engines.
    The folder is written beside ``output`` and swapped in at the end.
    """
    started = time.monotonic()
    lm = load_checkpoint(checkpoint)
    cfg = lm.config
    spec = lm.spec
    created = datetime.now(UTC).replace(microsecond=0)
    version = model_version or f"{cfg.name}-{created:%Y%m%d}"
    mode: TtaMode = tta or cfg.export.tta
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    work.chmod(0o755)
    try:
        with tempfile.TemporaryDirectory(prefix="wsb-") as scratch:
            # plain_*: single-view graphs (export check, calibration); fp32_path and ENGINE: the
            # shipped graphs, wrapped for test-time augmentation when asked.
            fp32_path = (work if include_fp32 else Path(scratch)) / REFERENCE
            plain_fp32 = Path(scratch) / "plain.fp32.onnx"
            plain_int8 = Path(scratch) / "plain.int8.onnx"
            export_onnx(lm.model, spec, plain_fp32, opset=cfg.export.opset)
            tta_file(plain_fp32, fp32_path, mode)
            val_paths = val if val is not None else list(cfg.data.val)
            val_data: LabelledData | None = None
            if val_paths:
                val_data = load_labelled(
                    val_paths, class_names=lm.class_names, multi_label=lm.multi_label
                )
            fitted = 1.0
            if temperature and val_data is not None and len(val_data):
                logits = OnnxEngine(fp32_path, threads=threads).pattern_logits(val_data.grids, spec)
                fitted = fit_temperature(logits, val_data.targets, lm.multi_label)
                apply_temperature(lm.model, fitted)
                export_onnx(lm.model, spec, plain_fp32, opset=cfg.export.opset)
                tta_file(plain_fp32, fp32_path, mode)
                log.info("pattern temperature %.3f fitted on the validation maps", fitted)
            calib_data = load_labelled(
                calibration or list(cfg.data.train),
                class_names=lm.class_names,
                multi_label=lm.multi_label,
            )
            calib = calibration_tensor(
                calibration_grids(calib_data, cfg.export.calibration_samples, cfg.seed), spec
            )
            check_export(lm.model, plain_fp32, calib[:16])
            quantize_int8(
                plain_fp32, plain_int8, calib, per_channel=cfg.export.per_channel, method=method
            )
            tta_file(plain_int8, work / ENGINE, mode)
            report: ParityReport | None = None
            if val_data is not None:
                report = parity(
                    OnnxEngine(fp32_path, threads=threads),
                    OnnxEngine(work / ENGINE, threads=threads),
                    val_data,
                    spec,
                )
                log.info("%s", report.text())
        lm.model.head_weights().save(work / HEAD)
        taxonomy_text = str(lm.meta.get("taxonomy_text", ""))
        (work / TAXONOMY).write_text(taxonomy_text, encoding="utf-8")
        (work / MODEL_JSON).write_text(json.dumps(_model_json(lm, fitted, mode), indent=2) + "\n")
        documents = [METRICS, CARD]
        metrics_doc: dict[str, Any] = {"model_version": version}
        if report is not None and val_data is not None:
            metrics_doc.update(
                {
                    "validation_files": [f["name"] for f in val_data.files],
                    "validation_sha256": {f["name"]: f["sha256"] for f in val_data.files},
                    "parity": report.scalars() | {"n": report.n},
                    "fp32": report.fp32.to_dict(),
                    "int8": report.int8.to_dict(),
                }
            )
            if report.int8.confusion is not None:
                png = confusion_png(
                    report.int8.confusion,
                    lm.class_names,
                    title=f"{version}: INT8 engine on {', '.join(p.name for p in val_paths)}",
                )
                (work / CONFUSION).write_bytes(png)
                documents.append(CONFUSION)
        (work / METRICS).write_text(json.dumps(metrics_doc, indent=2) + "\n")
        card = render_model_card(
            ModelCardInput(
                model_version=version,
                loaded=lm,
                checkpoint=checkpoint,
                created=created,
                parity=report,
                run=_run_info(checkpoint),
                command=command,
                confusion_file=CONFUSION if CONFUSION in documents else None,
                engine_bytes=(work / ENGINE).stat().st_size,
                calibration_samples=len(calib),
                calibration_method=method,
                temperature=fitted,
                output=output,
                tta=mode,
            )
        )
        (work / CARD).write_text(card, encoding="utf-8")
        manifest = _manifest(lm, version, created, report, work, include_fp32, documents)
        manifest.metrics["pattern_temperature"] = fitted
        contract.write_manifest(work, manifest)
        contract.verify(work)
        if output.exists():
            shutil.rmtree(output)
        work.replace(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BundleResult(output, manifest, report, time.monotonic() - started)


def _manifest(
    lm: LoadedModel,
    version: str,
    created: datetime,
    report: ParityReport | None,
    folder: Path,
    include_fp32: bool,
    documents: list[str],
) -> BundleManifest:
    m = BundleManifest(
        schema_version=SCHEMA_VERSION,
        model_version=version,
        pattern_classes=lm.class_names,
        root_cause_classes=lm.cause_names,
        taxonomy_ref=str(lm.meta.get("taxonomy_ref", "")),
        training_data_digest=str(lm.meta.get("data_digest", "")),
        producer=f"waferscope-trainer {__version__}",
    )
    contract.encoding_descriptor(lm.spec, m)
    m.created_time.FromDatetime(created)
    if report is not None:
        m.metrics.update(manifest_metrics(report))
    roles = BundleFileRole
    entries = [(ENGINE, roles.BUNDLE_FILE_ROLE_ENGINE_ONNX)]
    if include_fp32:
        entries.append((REFERENCE, roles.BUNDLE_FILE_ROLE_REFERENCE_ONNX))
    entries += [
        (HEAD, roles.BUNDLE_FILE_ROLE_HEAD_WEIGHTS),
        (TAXONOMY, roles.BUNDLE_FILE_ROLE_CONFIG),
        (MODEL_JSON, roles.BUNDLE_FILE_ROLE_CONFIG),
    ]
    entries += [(d, roles.BUNDLE_FILE_ROLE_DOCUMENT) for d in documents]
    m.files.extend(contract.describe_file(folder, rel, role) for rel, role in entries)
    return m


def manifest_metrics(report: ParityReport) -> dict[str, float]:
    """The manifest's metrics: those of the shipped INT8 engine, plus FP32 and parity figures."""
    q = report.int8
    out = {
        "pattern_accuracy": q.accuracy,
        "pattern_macro_f1": q.macro_f1,
        "pattern_macro_f1_defects": q.macro_f1_defects,
        "pattern_ece": q.ece,
        "val_maps": float(report.n),
        **report.scalars(),
    }
    if q.multi_label:
        out["pattern_exact_match"] = q.accuracy
    out.update({f"pattern_f1_{r.name}": r.f1 for r in q.per_class})
    return out
