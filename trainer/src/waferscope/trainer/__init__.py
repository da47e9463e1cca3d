"""waferscope trainer (everything that needs torch): labelled-map datasets, physics-aware
augmentation, the multi-task classifier, training, metrics, ONNX export, INT8 quantisation and
engine bundles."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("waferscope-trainer")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
