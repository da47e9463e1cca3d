"""A small but real ONNX engine bundle for the hub tests (built with the onnx package; no torch).

The graph follows the bundle contract (input -> pattern_logits, cause_logits, feature_map,
embedding): the encoding's channels are average-pooled to 8 x 8 (the "feature map"), and two
linear heads read the pooled fail density. The weights are set by hand so the engine behaves like
a crude classifier: failing dies in the four central cells make "Center", failing dies along the
outer ring make "Edge-Ring", a clean wafer is "none". Good enough to check that SHAP finds the
regions that drive a decision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from waferscope.hub.store.queries import PATTERN_CLASSES
from waferscope.protocols import bundle
from waferscope.protocols.encoding import EncodingSpec
from waferscope.protocols.pb.bundle_pb2 import BUNDLE_FILE_ROLE_ENGINE_ONNX, BundleManifest

CLASSES = list(PATTERN_CLASSES)
CAUSES = ["probe-card", "etch-nonuniformity", "particles", "handling", "none"]


def _weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.zeros((3, 8, 8, len(CLASSES)), dtype=np.float32)
    ring = np.zeros((8, 8), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    w[1, 3:5, 3:5, CLASSES.index("Center")] = 60.0
    w[1, ring, CLASSES.index("Edge-Ring")] = 12.0
    w[1, :, :, CLASSES.index("Random")] = 1.5
    w[1, :, :, CLASSES.index("none")] = -3.0
    bias = np.zeros(len(CLASSES), dtype=np.float32)
    bias[CLASSES.index("none")] = 2.0
    cause = np.zeros((3 * 64, len(CAUSES)), dtype=np.float32)
    cause[64:128, 0] = 1.0
    return w.reshape(3 * 64, len(CLASSES)), bias, cause


def build_bundle(folder: Path, model_version: str = "test-engine-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    w, b, wc = _weights()
    nodes = [
        helper.make_node(
            "AveragePool", ["input"], ["feature_map"], kernel_shape=[8, 8], strides=[8, 8]
        ),
        helper.make_node("GlobalAveragePool", ["feature_map"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["embedding"], axis=1),
        helper.make_node("Flatten", ["feature_map"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w_pattern", "b_pattern"], ["pattern_logits"]),
        helper.make_node("Gemm", ["flat", "w_cause"], ["cause_logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hub-test-engine",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [
            helper.make_tensor_value_info("pattern_logits", TensorProto.FLOAT, ["N", 9]),
            helper.make_tensor_value_info("cause_logits", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("feature_map", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]),
        ],
        initializer=[
            numpy_helper.from_array(w, "w_pattern"),
            numpy_helper.from_array(b, "b_pattern"),
            numpy_helper.from_array(wc, "w_cause"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.int8.onnx")
    manifest = BundleManifest(
        model_version=model_version,
        pattern_classes=CLASSES,
        root_cause_classes=CAUSES,
        producer="hub tests",
    )
    bundle.encoding_descriptor(EncodingSpec(), manifest)
    manifest.files.append(
        bundle.describe_file(folder, "model.int8.onnx", BUNDLE_FILE_ROLE_ENGINE_ONNX)
    )
    bundle.write_manifest(folder, manifest)
    return folder
