"""Classification metrics: accuracy, per-class precision / recall / F1, macro-F1 (with and without
``none``), confusion matrix (table and PNG), calibration (expected calibration error).

Multi-label (MixedWM38): exact-match accuracy (every output right), per-label precision / recall
/ F1 at threshold 0.5, macro-F1 over labels, and ECE over all sigmoid outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

NORMAL = "none"


@dataclass
class ClassRow:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Metrics:
    class_names: tuple[str, ...]
    multi_label: bool
    n: int
    accuracy: float  # top-1 (single-label) or exact match (multi-label)
    macro_f1: float
    macro_f1_defects: float  # without `none` (single-label); = macro_f1 for multi-label
    ece: float
    per_class: list[ClassRow]
    confusion: npt.NDArray[np.int64] | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def scalars(self, prefix: str = "") -> dict[str, float]:
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}macro_f1_defects": self.macro_f1_defects,
            f"{prefix}ece": self.ece,
        }
        if self.multi_label:
            out[f"{prefix}exact_match"] = self.accuracy
        for row in self.per_class:
            out[f"{prefix}f1_{row.name}"] = row.f1
        out.update({f"{prefix}{k}": v for k, v in self.extra.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "multi_label": self.multi_label,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_f1_defects": self.macro_f1_defects,
            "ece": self.ece,
            "per_class": [vars(r) for r in self.per_class],
            "class_names": list(self.class_names),
            "confusion": None if self.confusion is None else self.confusion.tolist(),
            **self.extra,
        }

    def table(self) -> str:
        """Markdown: the summary line, the per-class table and the confusion matrix."""
        kind = "exact-match accuracy" if self.multi_label else "accuracy"
        lines = [
            f"n = {self.n}, {kind} = {self.accuracy:.4f}, macro-F1 = {self.macro_f1:.4f}"
            + ("" if self.multi_label else f", macro-F1 without none = {self.macro_f1_defects:.4f}")
            + f", ECE = {self.ece:.4f}",
            "",
            "| class | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r.name} | {r.precision:.4f} | {r.recall:.4f} | {r.f1:.4f} | {r.support} |"
            for r in self.per_class
        ]
        if self.confusion is not None:
            lines += ["", confusion_table(self.confusion, self.class_names)]
        return "\n".join(lines)


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def expected_calibration_error(
    confidence: npt.NDArray[np.floating[Any]], correct: npt.NDArray[np.bool_], bins: int = 15
) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(float(correct[sel].mean()) - float(confidence[sel].mean()))
    return float(ece)


def confusion_matrix(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_metrics(
    y_true: npt.NDArray[np.int64],
    probs: npt.NDArray[np.floating[Any]],
    class_names: Sequence[str],
) -> Metrics:
    """Single-label metrics from true class indices and (N, K) probabilities."""
    names = tuple(class_names)
    k = len(names)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    rows = []
    for i, name in enumerate(names):
        tp = float(cm[i, i])
        p, r, f = _prf(tp, float(cm[:, i].sum()) - tp, float(cm[i, :].sum()) - tp)
        rows.append(ClassRow(name, p, r, f, int(cm[i, :].sum())))
    present = [r for r in rows if r.support > 0]
    macro = float(np.mean([r.f1 for r in present])) if present else 0.0
    defects = [r for r in present if r.name != NORMAL]
    macro_def = float(np.mean([r.f1 for r in defects])) if defects else macro
    n = int(y_true.size)
    accuracy = float((y_pred == y_true).mean()) if n else 0.0
    conf = probs.max(axis=1) if n else np.zeros(0)
    ece = expected_calibration_error(conf, y_pred == y_true)
    return Metrics(names, False, n, accuracy, macro, macro_def, ece, rows, cm)


def multilabel_metrics(
    y_true: npt.NDArray[np.int64],
    probs: npt.NDArray[np.floating[Any]],
    class_names: Sequence[str],
    threshold: float = 0.5,
) -> Metrics:
    """Multi-label metrics from (N, K) multi-hot truth and (N, K) sigmoid outputs."""
    names = tuple(class_names)
    pred = (probs >= threshold).astype(np.int64)
    truth = y_true.astype(np.int64)
    rows = []
    for i, name in enumerate(names):
        tp = float(((pred[:, i] == 1) & (truth[:, i] == 1)).sum())
        fp = float(((pred[:, i] == 1) & (truth[:, i] == 0)).sum())
        fn = float(((pred[:, i] == 0) & (truth[:, i] == 1)).sum())
        p, r, f = _prf(tp, fp, fn)
        rows.append(ClassRow(name, p, r, f, int(truth[:, i].sum())))
    n = int(truth.shape[0])
    exact = float((pred == truth).all(axis=1).mean()) if n else 0.0
    macro = float(np.mean([r.f1 for r in rows])) if rows else 0.0
    conf = np.where(pred == 1, probs, 1.0 - probs).reshape(-1)
    ece = expected_calibration_error(conf, (pred == truth).reshape(-1))
    hamming = float((pred == truth).mean()) if n else 0.0
    return Metrics(
        names, True, n, exact, macro, macro, ece, rows, None, {"label_accuracy": hamming}
    )


def compute_metrics(
    y_true: npt.NDArray[np.int64],
    probs: npt.NDArray[np.floating[Any]],
    class_names: Sequence[str],
    multi_label: bool,
) -> Metrics:
    if multi_label:
        return multilabel_metrics(y_true, probs, class_names)
    return classification_metrics(y_true, probs, class_names)


def confusion_table(cm: npt.NDArray[np.int64], names: Sequence[str]) -> str:
    """The confusion matrix as a markdown table (rows: truth, columns: prediction)."""
    head = "| truth \\ predicted | " + " | ".join(names) + " |"
    rule = "| --- |" + " ---: |" * len(names)
    body = [
        f"| {name} | " + " | ".join(str(int(v)) for v in cm[i]) + " |"
        for i, name in enumerate(names)
    ]
    return "\n".join([head, rule, *body])


def confusion_png(cm: npt.NDArray[np.int64], names: Sequence[str], title: str = "") -> bytes:
    """A PNG of the confusion matrix: cells shaded by row-normalised recall, counts written."""
    from PIL import Image, ImageDraw, ImageFont

    k = len(names)
    cell, left, top = 64, 110, 110 if title else 90
    width, height = left + k * cell + 20, top + k * cell + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((10, 8), title, fill="black", font=font)
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    share = cm / rows
    for i in range(k):
        draw.text((8, top + i * cell + cell // 2 - 6), names[i][:14], fill="black", font=font)
        label = names[i][:9]
        draw.text((left + i * cell + 4, top - 18), label, fill="black", font=font)
        for j in range(k):
            v = float(share[i, j])
            shade = int(255 * (1.0 - v))
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=color, outline="grey")
            ink = "white" if v > 0.6 else "black"
            draw.text((x0 + 6, y0 + cell // 2 - 12), str(int(cm[i, j])), fill=ink, font=font)
            draw.text((x0 + 6, y0 + cell // 2 + 2), f"{v:.0%}", fill=ink, font=font)
    draw.text((left, top + k * cell + 10), "rows: truth, columns: prediction", fill="black")
    draw.text((left, top - 36), "predicted ->", fill="black", font=font)
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
