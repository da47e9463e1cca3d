"""INT8 static quantisation (onnxruntime, QDQ format) and the FP32-vs-INT8 parity report.

Calibration data are drawn from the *training* set: a class-stratified, seeded sample of maps,
encoded without augmentation exactly as the edge encodes them. Weights are quantised per channel
(signed 8-bit), activations per tensor (unsigned 8-bit, asymmetric), the usual "U8S8" scheme of
onnxruntime's CPU kernels; TensorRT reads the same QDQ graph (explicit quantisation).

The parity report runs both engines on the same labelled maps and gives top-1 agreement, both
macro-F1 values and their difference.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from waferscope.protocols.encoding import EncodingSpec, encode_batch
from waferscope.trainer.data import LabelledData, limit_per_class
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.metrics import Metrics, compute_metrics

log = logging.getLogger(__name__)

CalibrationMethod = Literal["minmax", "percentile", "entropy"]


def calibration_grids(data: LabelledData, n: int, seed: int) -> list[npt.NDArray[np.uint8]]:
    """About ``n`` maps, every class represented (at most n / classes each, then topped up)."""
    keys = data.keys()
    per_class = max(1, n // max(1, len(np.unique(keys))))
    chosen = limit_per_class(keys, per_class, seed)
    if chosen.size < n:
        rng = np.random.default_rng(seed + 1)
        rest = np.setdiff1d(np.arange(len(data)), chosen)
        extra = rng.choice(rest, size=min(n - chosen.size, rest.size), replace=False)
        chosen = np.sort(np.concatenate([chosen, extra]))
    return [data.grids[int(i)] for i in chosen[:n]]


def calibration_tensor(
    grids: list[npt.NDArray[np.uint8]], spec: EncodingSpec
) -> npt.NDArray[np.float32]:
    return encode_batch(grids, spec)


def _reader(x: npt.NDArray[np.float32], batch: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader  # type: ignore[import-untyped]

    from waferscope.protocols.bundle import INPUT_NAME

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            if self.start >= len(x):
                return None
            part = x[self.start : self.start + batch]
            self.start += batch
            return {INPUT_NAME: part}

        def rewind(self) -> None:
            self.start = 0

    return Reader()


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration: npt.NDArray[np.float32],
    *,
    per_channel: bool = True,
    method: CalibrationMethod = "minmax",
    batch: int = 64,
) -> Path:
    """Write the QDQ INT8 model of ``fp32_path`` calibrated on ``calibration`` (N, C, S, S)."""
    from onnxruntime.quantization import (
        CalibrationMethod as OrtMethod,
    )
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (  # type: ignore[import-untyped]
        quant_pre_process,
    )

    methods = {
        "minmax": OrtMethod.MinMax,
        "percentile": OrtMethod.Percentile,
        "entropy": OrtMethod.Entropy,
    }
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wsq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            source = pre
        except Exception as exc:  # pre-processing is an optimisation; quantise the export as is
            log.warning("quantisation pre-processing failed (%s); using the export as is", exc)
            source = fp32_path
        out = int8_path.with_name(int8_path.name + ".part")
        quantize_static(
            str(source),
            str(out),
            _reader(calibration, batch),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        out.replace(int8_path)
    return int8_path


@dataclass
class ParityReport:
    n: int
    top1_agreement: float
    cause_agreement: float
    fp32: Metrics
    int8: Metrics

    @property
    def macro_f1_delta(self) -> float:
        """INT8 minus FP32 macro-F1 (negative: INT8 is worse)."""
        return self.int8.macro_f1 - self.fp32.macro_f1

    def scalars(self) -> dict[str, float]:
        return {
            "int8_fp32_agreement": self.top1_agreement,
            "int8_fp32_cause_agreement": self.cause_agreement,
            "fp32_macro_f1": self.fp32.macro_f1,
            "int8_macro_f1": self.int8.macro_f1,
            "int8_macro_f1_delta": self.macro_f1_delta,
        }

    def text(self) -> str:
        return (
            f"parity on {self.n} maps: top-1 agreement {self.top1_agreement:.4f}, "
            f"root-cause agreement {self.cause_agreement:.4f}, macro-F1 FP32 "
            f"{self.fp32.macro_f1:.4f} / INT8 {self.int8.macro_f1:.4f} "
            f"(delta {self.macro_f1_delta:+.4f})"
        )


def parity(
    fp32: OnnxEngine,
    int8: OnnxEngine,
    data: LabelledData,
    spec: EncodingSpec,
    *,
    batch_size: int = 256,
) -> ParityReport:
    p32, c32 = fp32.predict(data.grids, spec, multi_label=data.multi_label, batch_size=batch_size)
    p8, c8 = int8.predict(data.grids, spec, multi_label=data.multi_label, batch_size=batch_size)
    if data.multi_label:
        agree = float(((p32 >= 0.5) == (p8 >= 0.5)).all(axis=1).mean()) if len(p32) else 1.0
    else:
        agree = float((p32.argmax(1) == p8.argmax(1)).mean()) if len(p32) else 1.0
    cause_agree = float((c32.argmax(1) == c8.argmax(1)).mean()) if len(c32) else 1.0
    m32 = compute_metrics(data.targets, p32, data.class_names, data.multi_label)
    m8 = compute_metrics(data.targets, p8, data.class_names, data.multi_label)
    return ParityReport(len(data), agree, cause_agree, m32, m8)
