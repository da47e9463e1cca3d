"""The golden set a release ships: inputs and the logits its engine gave where it was built.

An edge runs the same inputs through the engine it just loaded and compares (the local health
gate's parity check): a different onnxruntime build, CPU kernel set or a damaged engine shows up
as logits that drift or a top class that changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.bundle import BundleError, describe_file, read_manifest, write_manifest
from waferscope.protocols.encoding import encode
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole
from waferscope.protocols.wafermap import WaferMap

GOLDEN_NAME: Final = "golden.npz"
MAX_GOLDEN: Final = 64

F32 = npt.NDArray[np.float32]
PatternLogits = Callable[[F32], F32]
"""Runs an engine on an encoded batch and returns its pattern logits."""


@dataclass(frozen=True, slots=True)
class GoldenParity:
    """How an engine's logits compare with the golden set's."""

    count: int
    max_abs_diff: float
    top1_agreement: float


def golden_inputs(wafers: Iterable[WaferMap], folder: Path) -> F32:
    """Encode up to :data:`MAX_GOLDEN` wafers the way the bundle's engine expects."""
    from waferscope.protocols.bundle import encoding_of

    spec = encoding_of(read_manifest(folder))
    encoded = [encode(w, spec) for _, w in zip(range(MAX_GOLDEN), wafers, strict=False)]
    if not encoded:
        raise BundleError(f"{folder}: no wafers to build a golden set from")
    return np.stack(encoded).astype(np.float32)


def add_golden(folder: Path, inputs: F32, pattern_logits: PatternLogits) -> Path:
    """Run ``inputs`` through the engine, write ``golden.npz`` and list it in the manifest."""
    expected = pattern_logits(inputs)
    path = folder / GOLDEN_NAME
    with path.open("wb") as fh:
        np.savez(fh, inputs=inputs.astype(np.float32), pattern_logits=expected.astype(np.float32))
    manifest = read_manifest(folder)
    kept = [f for f in manifest.files if f.path != GOLDEN_NAME]
    del manifest.files[:]
    manifest.files.extend(kept)
    manifest.files.append(describe_file(folder, GOLDEN_NAME, BundleFileRole.BUNDLE_FILE_ROLE_OTHER))
    write_manifest(folder, manifest)
    return path


def load_golden(folder: Path) -> tuple[F32, F32]:
    """(inputs, expected pattern logits) of a bundle's golden set; BundleError if absent/bad."""
    path = folder / GOLDEN_NAME
    try:
        with np.load(path, allow_pickle=False) as z:
            inputs = np.asarray(z["inputs"], np.float32)
            expected = np.asarray(z["pattern_logits"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"{path}: no usable golden set ({exc})") from None
    if inputs.ndim != 4 or expected.ndim != 2 or len(inputs) != len(expected) or not len(inputs):
        raise BundleError(f"{path}: golden inputs {inputs.shape} and logits {expected.shape}")
    return inputs, expected


def golden_parity(folder: Path, pattern_logits: PatternLogits) -> GoldenParity:
    """Run the golden inputs through an engine and compare with the shipped logits."""
    inputs, expected = load_golden(folder)
    got = np.asarray(pattern_logits(inputs), np.float32)
    if got.shape != expected.shape:
        raise BundleError(f"{folder}: engine gives logits {got.shape}, golden {expected.shape}")
    agree = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    return GoldenParity(len(inputs), float(np.max(np.abs(got - expected))), agree)
