"""The model card shipped in every bundle (MODEL_CARD.md), written from what the run recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from waferscope.trainer.export import LoadedModel
from waferscope.trainer.metrics import Metrics
from waferscope.trainer.quantize import ParityReport

WM811K_NOTICE = (
    'WM-811K (MIR-WM811K): "Copyright 2015 Jyh-Shing Roger Jang". M.-J. Wu, J.-S. R. Jang, '
    "J.-L. Chen, Wafer Map Failure Pattern Recognition and Similarity Ranking for Large-Scale "
    "Data Sets, IEEE Trans. Semiconductor Manufacturing 28(1), 1-12, 2015 "
    "(doi:10.1109/TSM.2014.2364237); MIR-WM811K: Dataset for wafer map failure pattern "
    "recognition, 2015, mirlab.org."
)
MIXED_NOTICE = (
    "MixedWM38: J. Wang et al., Deformable Convolutional Networks for Efficient Mixed-Type Wafer "
    "Defect Pattern Recognition, IEEE Trans. Semiconductor Manufacturing, 2020 "
    "(doi:10.1109/TSM.2020.3020985)."
)


@dataclass
class ModelCardInput:
    model_version: str
    loaded: LoadedModel
    checkpoint: Path
    created: datetime
    parity: ParityReport | None
    run: dict[str, Any]
    command: str | None
    confusion_file: str | None
    engine_bytes: int
    calibration_samples: int
    calibration_method: str
    temperature: float = 1.0
    output: Path | None = None
    tta: str = "none"


def _per_class(fp32: Metrics, int8: Metrics) -> list[str]:
    lines = [
        "| class | support | precision (INT8) | recall (INT8) | F1 (INT8) | F1 (FP32) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, b in zip(int8.per_class, fp32.per_class, strict=True):
        lines.append(
            f"| {a.name} | {a.support} | {a.precision:.4f} | {a.recall:.4f} | {a.f1:.4f} "
            f"| {b.f1:.4f} |"
        )
    return lines


def render_model_card(inp: ModelCardInput) -> str:
    lm = inp.loaded
    cfg = lm.config
    files = lm.meta.get("data_files", [])
    is_mixed = lm.multi_label
    summary = inp.run.get("summary", {})
    history = inp.run.get("history", [])
    train_s = sum(float(h.get("train_seconds", 0.0)) for h in history)
    eval_s = sum(float(h.get("eval_seconds", 0.0)) for h in history)
    kind_text = (
        "multi-label, sigmoid outputs" if is_mixed else "single-label, softmax over the classes"
    )
    command = inp.command or f"waferscope train --config {cfg.run_dir / 'config.json'}"
    out = [
        f"# Model card: {inp.model_version}",
        "",
        f"Pattern classifier for wafer maps ({kind_text}), with a root-cause head. Created "
        f"{inp.created.isoformat()} by waferscope-trainer.",
        "",
        "## What it predicts",
        "",
        f"- Pattern classes (head order): {', '.join(lm.class_names)}.",
        f"- Root-cause classes: {', '.join(lm.cause_names)} (taxonomy "
        f"`{lm.meta.get('taxonomy_ref', '')}`, file `taxonomy.toml`).",
        "- **The root-cause head is a prior, not evidence.** No public dataset has cause labels; "
        "the head was trained to reproduce the taxonomy's P(cause | pattern) table for the map's "
        "pattern. Its output says which process causes this *kind of pattern* usually points to, "
        "weighted by how sure the pattern head is. It becomes evidence only after retraining on "
        "cause labels supplied by reviewers.",
        "",
        "## Model",
        "",
        f"- Backbone `{cfg.model.backbone}` (timm) with {cfg.model.backbone_kwargs or 'default'} "
        f"arguments, output stride {cfg.model.output_stride}, trained from scratch "
        "(no pretrained weights).",
        f"- Head: global average pooling -> dense {cfg.model.hidden} (ReLU, dropout "
        f"{cfg.model.dropout}) -> pattern and root-cause linear heads.",
        f"- Parameters: {sum(p.numel() for p in lm.model.parameters()):,}. Input: encoding "
        f"v{lm.spec.version}, {lm.spec.size}x{lm.spec.size}, channels "
        f"{', '.join(lm.spec.channels)}.",
        "- Engine: `model.int8.onnx`, onnxruntime static INT8 (QDQ, per-channel weights), "
        f"{inp.engine_bytes / 1e6:.2f} MB, calibrated on {inp.calibration_samples} training maps "
        f"({inp.calibration_method}). Outputs `pattern_logits`, `cause_logits`, `feature_map`, "
        "`embedding`; `head.npz` holds the FP32 head for Grad-CAM.",
        *(
            [
                "- Test-time augmentation (`--tta d4`): the engine runs the 8 quarter-turn and "
                "mirror views of each map and averages their logits (8x the single-view cost); "
                "`feature_map` and `embedding` are those of the map as delivered, so Grad-CAM "
                "explains the original view. All figures below are of the averaged engine.",
            ]
            if inp.tta == "d4"
            else []
        ),
        f"- Pattern temperature {inp.temperature:.3f}, fitted on the validation maps (lowest "
        "NLL) and folded into the pattern layer of both the engine and `head.npz` (decisions "
        "unchanged; the ECE below is after scaling and, being measured on the same maps, "
        "optimistic).",
        "",
        "## Data",
        "",
    ]
    for f in files:
        out.append(f"- training: `{f['name']}` ({f.get('format', '')}), sha256 `{f['sha256']}`")
    out.append(f"- training data digest (manifest): `{lm.meta.get('data_digest', '')}`")
    if inp.parity is not None:
        out.append(
            f"- validation (model selection and the figures below): {inp.parity.n} maps from "
            + (", ".join(p.name for p in cfg.data.val) or "a stratified split of the training data")
        )
    out += [
        "- The held-out test split of the dataset was not used for anything.",
        "",
        "## How it was made",
        "",
        "```",
        command,
        f"waferscope bundle --checkpoint {inp.checkpoint} --output {inp.output or '<folder>'}"
        + (f" --tta {inp.tta}" if inp.tta != cfg.export.tta else ""),
        "```",
        "",
        f"- Seed {cfg.seed}; config as recorded in `model.json` (`training_config`).",
        f"- Optimiser AdamW, lr {cfg.optim.lr}, weight decay {cfg.optim.weight_decay}, cosine "
        f"schedule, {cfg.optim.epochs} epochs of {cfg.data.epoch_samples or 'all'} maps drawn "
        f"with class-balancing power {cfg.data.balance_power}; focal loss gamma "
        f"{cfg.loss.focal_gamma}; loss weights pattern {cfg.loss.pattern_weight} / cause "
        f"{cfg.loss.cause_weight} / consistency {cfg.loss.consistency_weight}.",
    ]
    if summary:
        out.append(
            f"- Ran {summary.get('epochs_run')} epochs on {summary.get('device')} "
            f"({summary.get('precision')}); best epoch {summary.get('best_epoch')} by validation "
            f"{summary.get('select_metric')}"
            + ("; stopped early." if summary.get("stopped_early") else ".")
        )
    if history:
        out.append(
            f"- Training time {train_s / 60:.1f} min, validation passes {eval_s / 60:.1f} min, "
            f"{train_s / max(1, len(history)):.0f} s per training epoch."
        )
    if inp.parity is not None:
        p = inp.parity
        kind = "exact-match accuracy" if is_mixed else "accuracy"
        out += [
            "",
            "## Validation metrics",
            "",
            "| engine | " + kind + " | macro-F1 | macro-F1 without none | ECE |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, m in (("FP32 (ONNX)", p.fp32), ("INT8 (shipped)", p.int8)):
            out.append(
                f"| {name} | {m.accuracy:.4f} | {m.macro_f1:.4f} | {m.macro_f1_defects:.4f} "
                f"| {m.ece:.4f} |"
            )
        out += [
            "",
            f"INT8 vs FP32: top-1 agreement {p.top1_agreement:.4f}, macro-F1 delta "
            f"{p.macro_f1_delta:+.4f}, root-cause top-1 agreement {p.cause_agreement:.4f}.",
            "",
            "### Per class",
            "",
            *_per_class(p.fp32, p.int8),
        ]
        if inp.confusion_file and p.int8.confusion is not None:
            from waferscope.trainer.metrics import confusion_table

            out += [
                "",
                "### Confusion matrix (INT8, rows: truth, columns: prediction)",
                "",
                confusion_table(p.int8.confusion, lm.class_names),
                "",
                f"![confusion matrix]({inp.confusion_file})",
            ]
    out += [
        "",
        "## Limitations",
        "",
        "- Validation figures come from the split used for model selection (best epoch), so "
        "they are slightly optimistic; the dataset's test split is kept for independent "
        "evaluation.",
        "- WM-811K labels are noisy (single annotators, ambiguous Loc / Edge-Loc / Scratch "
        "boundaries); maps from other fabs, products and testers differ in die count and "
        "background fail rate. Re-validate on local labelled maps before relying on it.",
        "",
        "## Data licence and citation",
        "",
        MIXED_NOTICE if is_mixed else WM811K_NOTICE,
        "",
    ]
    return "\n".join(out)
