"""SHAP attribution over wafer regions, computed model-agnostically on the ONNX engine.

The wafer is cut into ``grid × grid`` regions laid over the model-input square (the way encoding
v1 centres the map). A coalition of regions keeps the failing dies of the regions in it and turns
the failing dies of the other regions into passing ones; the engine (the hub's copy of the current
bundle, on onnxruntime) then scores the encoded map. ``shap.KernelExplainer`` estimates each
region's Shapley value for the target class from ``shap_samples`` coalitions, against the
all-passing wafer as the baseline. Positive values push towards the class, negative away from it.

This needs no gradients and nothing from the edge: only protocols' encoding, the bundle contract
and onnxruntime.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from waferscope.hub.config import EngineConfig
from waferscope.protocols import bundle
from waferscope.protocols.encoding import encode_batch
from waferscope.protocols.messages import unpack_states
from waferscope.protocols.pb.bundle_pb2 import BUNDLE_FILE_ROLE_ENGINE_ONNX
from waferscope.protocols.pb.result_pb2 import CompactWaferMap
from waferscope.protocols.wafermap import FAIL_DIE, NO_DIE, PASS_DIE


@dataclass(frozen=True, slots=True)
class RegionAttribution:
    target: str
    model_version: str
    grid: int
    values: npt.NDArray[np.float64]  # (grid, grid) Shapley values for ``target``
    base_value: float  # the target's probability on the baseline (all-passing) wafer
    probability: float  # the target's probability on the wafer as it is
    samples: int

    def top_regions(self, n: int = 5) -> list[tuple[int, int, float]]:
        """(row, column, value) of the regions that push hardest towards the target."""
        flat = [
            (r, c, float(self.values[r, c]))
            for r in range(self.grid)
            for c in range(self.grid)
            if self.values[r, c] != 0
        ]
        return sorted(flat, key=lambda t: -t[2])[:n]


def region_index(shape: tuple[int, int], grid: int) -> npt.NDArray[np.int64]:
    """The region number (row * grid + column) of every cell of a rows × cols die grid."""
    rows, cols = shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    r = ((np.arange(rows) + top) * grid) // side
    c = ((np.arange(cols) + left) * grid) // side
    return np.asarray(r[:, None] * grid + c[None, :], dtype=np.int64)


def _softmax(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class ShapExplainer:
    """Loads the bundle once; ``explain`` is safe from several threads (one at a time)."""

    def __init__(self, config: EngineConfig) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        if config.bundle is None:
            raise bundle.BundleError("no engine bundle is configured (engine.bundle)")
        folder = config.bundle
        manifest = bundle.verify(folder)
        self.spec = bundle.encoding_of(manifest)
        self.classes = list(manifest.pattern_classes)
        self.model_version = manifest.model_version
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        path = folder / bundle.file_for_role(manifest, BUNDLE_FILE_ROLE_ENGINE_ONNX)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.grid = config.shap_grid
        self.samples = config.shap_samples
        self._lock = threading.Lock()

    def probabilities(self, grids: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float64]:
        x = encode_batch(grids, self.spec)
        (logits,) = self.session.run(["pattern_logits"], {bundle.INPUT_NAME: x})
        return _softmax(np.asarray(logits))

    def explain(self, compact: CompactWaferMap, *, target: str | None = None) -> RegionAttribution:
        import shap  # type: ignore[import-untyped]

        grid = unpack_states(compact)
        regions = region_index(grid.shape, self.grid)
        fails = grid == FAIL_DIE
        active = np.unique(regions[grid != NO_DIE])  # regions that hold dies
        clean = np.where(fails, PASS_DIE, grid).astype(np.uint8)
        full = self.probabilities([grid])[0]
        t = self.classes.index(target) if target in self.classes else int(np.argmax(full))

        def model(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            batch = []
            for row in np.asarray(z):
                keep = np.isin(regions, active[row > 0.5])
                batch.append(np.where(fails & keep, FAIL_DIE, clean).astype(np.uint8))
            out: list[npt.NDArray[np.float64]] = []
            for i in range(0, len(batch), 128):
                out.append(self.probabilities(batch[i : i + 128])[:, t])
            return np.concatenate(out)

        with self._lock:
            explainer = shap.KernelExplainer(model, np.zeros((1, len(active))))
            raw: Any = explainer.shap_values(
                np.ones((1, len(active))), nsamples=self.samples, silent=True
            )
        values = np.zeros(self.grid * self.grid)
        values[active] = np.asarray(raw, dtype=np.float64).reshape(-1)[: len(active)]
        base = float(np.asarray(explainer.expected_value).reshape(-1)[0])
        return RegionAttribution(
            target=self.classes[t],
            model_version=self.model_version,
            grid=self.grid,
            values=values.reshape(self.grid, self.grid),
            base_value=base,
            probability=float(full[t]),
            samples=self.samples,
        )
