"""onnxruntime sessions for the trainer's own checks (export parity, INT8 parity, evaluate).

The edge has its own engine code; the trainer never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES
from waferscope.protocols.encoding import EncodingSpec, encode_batch


def softmax(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


class OnnxEngine:
    """One onnxruntime CPU session with a fixed number of threads."""

    def __init__(self, path: Path, *, threads: int = 2, providers: Sequence[str] | None = None):
        import onnxruntime as ort  # type: ignore[import-untyped]

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(
        self, x: npt.NDArray[np.float32], outputs: Sequence[str] = OUTPUT_NAMES
    ) -> list[npt.NDArray[np.float32]]:
        result: list[Any] = self.session.run(list(outputs), {INPUT_NAME: x})
        return [np.asarray(r, dtype=np.float32) for r in result]

    def pattern_logits(
        self, grids: Sequence[npt.NDArray[np.uint8]], spec: EncodingSpec, batch_size: int = 256
    ) -> npt.NDArray[np.float32]:
        parts = [
            self.run(encode_batch(grids[start : start + batch_size], spec), OUTPUT_NAMES[:1])[0]
            for start in range(0, len(grids), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def predict(
        self,
        grids: Sequence[npt.NDArray[np.uint8]],
        spec: EncodingSpec,
        *,
        multi_label: bool,
        batch_size: int = 256,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(pattern probabilities, cause probabilities) for dense grids."""
        pattern, cause = [], []
        for start in range(0, len(grids), batch_size):
            x = encode_batch(grids[start : start + batch_size], spec)
            p_logits, c_logits = self.run(x, OUTPUT_NAMES[:2])
            pattern.append(sigmoid(p_logits) if multi_label else softmax(p_logits))
            cause.append(softmax(c_logits))
        if not pattern:
            empty = np.zeros((0, 0), np.float32)
            return empty, empty
        return np.concatenate(pattern), np.concatenate(cause)
