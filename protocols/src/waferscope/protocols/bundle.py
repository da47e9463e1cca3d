"""Engine bundles: the folder a trainer produces, the hub signs and pushes, and an edge loads.

Layout of a bundle folder (every path relative, "/"-separated)::

    manifest.json      BundleManifest (waferscope.v1) in canonical proto3 JSON — see messages.py
    model.int8.onnx    role ENGINE_ONNX     — the INT8 engine (QDQ); the edge runs this
    model.fp32.onnx    role REFERENCE_ONNX  — optional: the FP32 export it was quantised from
    head.npz           role HEAD_WEIGHTS    — the classifier head, for Grad-CAM on the edge
    ...                any other file, each listed with its role, size and sha256

Engine I/O contract (ONNX, dynamic batch N):

=================  ====================  =============================================
name               shape                 meaning
=================  ====================  =============================================
``input``          (N, C, S, S) float32  model-input encoding (``manifest.encoding``)
``pattern_logits`` (N, P)                one per ``manifest.pattern_classes``
``cause_logits``   (N, R)                one per ``manifest.root_cause_classes``
``feature_map``    (N, K, h, w)          last convolutional feature map
``embedding``      (N, K)                global average pool of ``feature_map``
=================  ====================  =============================================

The head maps the embedding to the logits: a stack of dense layers (weight, bias, activation),
then one linear layer per task. Grad-CAM needs only the gradient of a class score with respect to
the embedding (``HeadWeights.pattern_gradient``); divided by h·w it is the Grad-CAM channel
weight, because the embedding is the mean of the feature map (DESIGN.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format

from waferscope.protocols.encoding import EncodingSpec
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb.bundle_pb2 import BundleFile, BundleFileRole, BundleManifest

MANIFEST_NAME: Final = "manifest.json"
INPUT_NAME: Final = "input"
OUTPUT_NAMES: Final = ("pattern_logits", "cause_logits", "feature_map", "embedding")
HEAD_FORMAT_VERSION: Final = 1

Activation = Literal["identity", "relu", "silu", "gelu", "hardswish"]
ACTIVATIONS: Final[tuple[str, ...]] = ("identity", "relu", "silu", "gelu", "hardswish")

FloatArray = npt.NDArray[np.floating[Any]]


class BundleError(WaferscopeError):
    """A bundle is missing, incomplete, altered, or does not fit this pipeline."""


# --------------------------------------------------------------------------- files and manifest
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(folder: Path, rel: str, role: BundleFileRole.ValueType) -> BundleFile:
    """A manifest entry for a file inside the bundle folder (size and sha256 measured now)."""
    _check_rel(rel)
    path = folder / rel
    return BundleFile(path=rel, sha256=sha256_file(path), size_bytes=path.stat().st_size, role=role)


def _check_rel(rel: str) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not rel or "\\" in rel:
        raise BundleError(f"bundle path {rel!r} must be relative, '/'-separated, without '..'")


def write_manifest(folder: Path, manifest: BundleManifest) -> Path:
    path = folder / MANIFEST_NAME
    text = json_format.MessageToJson(manifest, indent=2, sort_keys=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(folder: Path) -> BundleManifest:
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bundle manifest ({exc.strerror})") from None
    manifest = BundleManifest()
    try:
        json_format.Parse(text, manifest, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:
        raise BundleError(f"{path}: not a valid bundle manifest ({exc})") from None
    return manifest


def verify(folder: Path, manifest: BundleManifest | None = None) -> BundleManifest:
    """Check every listed file exists with the listed size and sha256; return the manifest."""
    m = manifest or read_manifest(folder)
    if not m.files:
        raise BundleError(f"{folder}: the manifest lists no files")
    for f in m.files:
        _check_rel(f.path)
        path = folder / f.path
        if not path.is_file():
            raise BundleError(f"{folder}: listed file {f.path!r} is missing")
        size = path.stat().st_size
        if size != f.size_bytes:
            raise BundleError(f"{folder}: {f.path} is {size} bytes, manifest says {f.size_bytes}")
        got = sha256_file(path)
        if got != f.sha256:
            raise BundleError(f"{folder}: {f.path} sha256 {got[:12]}… does not match the manifest")
    return m


def file_for_role(manifest: BundleManifest, role: BundleFileRole.ValueType) -> str:
    for f in manifest.files:
        if f.role == role:
            return f.path
    name = BundleFileRole.Name(role)
    raise BundleError(f"bundle {manifest.model_version or '?'} has no file with role {name}")


def encoding_of(manifest: BundleManifest) -> EncodingSpec:
    """The encoding the engine expects (refusing a bundle that does not say)."""
    enc = manifest.encoding
    if not enc.version:
        raise BundleError(f"bundle {manifest.model_version or '?'} does not declare its encoding")
    spec = EncodingSpec(version=enc.version, size=enc.size)
    if list(enc.channels) != list(spec.channels):
        raise BundleError(
            f"bundle encoding channels {list(enc.channels)} differ from v{spec.version}'s "
            f"{list(spec.channels)}"
        )
    return spec


def encoding_descriptor(spec: EncodingSpec, manifest: BundleManifest) -> None:
    """Fill a manifest's encoding fields from an EncodingSpec."""
    manifest.encoding_version = spec.version
    manifest.encoding.version = spec.version
    manifest.encoding.size = spec.size
    del manifest.encoding.channels[:]
    manifest.encoding.channels.extend(spec.channels)


# --------------------------------------------------------------------------- head weights
def _activate(x: FloatArray, kind: str) -> tuple[FloatArray, FloatArray]:
    """(activation(x), d activation / dx) elementwise."""
    if kind == "identity":
        return x, np.ones_like(x)
    if kind == "relu":
        return np.maximum(x, 0), (x > 0).astype(x.dtype)
    if kind == "silu":
        s = 1.0 / (1.0 + np.exp(-x))
        return x * s, s * (1 + x * (1 - s))
    if kind == "hardswish":
        y = x * np.clip(x + 3, 0, 6) / 6
        d = np.where(x < -3, 0.0, np.where(x > 3, 1.0, (2 * x + 3) / 6)).astype(x.dtype)
        return y, d
    if kind == "gelu":  # exact (erf) GELU, torch's default
        from math import erf, pi, sqrt

        verf = np.vectorize(erf, otypes=[np.float64])
        cdf = 0.5 * (1 + verf(x / sqrt(2.0)))
        pdf = np.exp(-0.5 * x.astype(np.float64) ** 2) / sqrt(2 * pi)
        return (x * cdf).astype(x.dtype), (cdf + x * pdf).astype(x.dtype)
    raise BundleError(f"unknown head activation {kind!r} (known: {', '.join(ACTIVATIONS)})")


@dataclass(frozen=True, slots=True)
class DenseLayer:
    weight: FloatArray  # (out, in), as torch.nn.Linear stores it
    bias: FloatArray  # (out,)
    activation: str = "relu"


@dataclass(frozen=True, slots=True)
class HeadWeights:
    """The classifier head: shared dense layers, then a pattern and a root-cause linear layer.

    Dropout is absent at inference. Batch-norm in the head, if any, must be folded into the
    dense layers by the exporter.
    """

    layers: tuple[DenseLayer, ...]
    pattern: DenseLayer  # activation "identity"
    cause: DenseLayer  # activation "identity"

    def __post_init__(self) -> None:
        width: int | None = None
        for i, layer in enumerate((*self.layers, self.pattern)):
            if layer.weight.ndim != 2 or layer.bias.shape != (layer.weight.shape[0],):
                raise BundleError(f"head layer {i}: weight/bias shapes do not match")
            if width is not None and layer.weight.shape[1] != width:
                raise BundleError(
                    f"head layer {i}: expects {layer.weight.shape[1]} inputs, "
                    f"previous layer gives {width}"
                )
            if i < len(self.layers):
                width = layer.weight.shape[0]
            if layer.activation not in ACTIVATIONS:
                raise BundleError(f"head layer {i}: unknown activation {layer.activation!r}")
        if self.cause.weight.shape[1] != self.pattern.weight.shape[1]:
            raise BundleError("the pattern and root-cause layers must read the same features")

    @property
    def embedding_size(self) -> int:
        first = self.layers[0] if self.layers else self.pattern
        return int(first.weight.shape[1])

    def _trunk(self, embedding: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
        x = np.asarray(embedding, dtype=np.float32)
        derivs: list[FloatArray] = []
        for layer in self.layers:
            x, d = _activate(x @ layer.weight.T + layer.bias, layer.activation)
            derivs.append(d)
        return x, derivs

    def logits(self, embedding: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(pattern logits, root-cause logits) for a batch of embeddings (N, K)."""
        h, _ = self._trunk(embedding)
        return (
            h @ self.pattern.weight.T + self.pattern.bias,
            h @ self.cause.weight.T + self.cause.bias,
        )

    def pattern_gradient(self, embedding: FloatArray, classes: Sequence[int]) -> FloatArray:
        """d(pattern logit of classes[i]) / d(embedding[i]) for each row: shape (N, K)."""
        emb = np.asarray(embedding, dtype=np.float32)
        _, derivs = self._trunk(emb)
        grad = self.pattern.weight[np.asarray(classes, dtype=np.int64)]  # (N, width)
        for layer, d in zip(reversed(self.layers), reversed(derivs), strict=True):
            grad = (grad * d) @ layer.weight
        return grad.astype(np.float32)

    # ---------------------------------------------------------------- persistence (npz)
    def to_bytes(self) -> bytes:
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        meta = {
            "format": HEAD_FORMAT_VERSION,
            "activations": [layer.activation for layer in self.layers],
        }
        for i, layer in enumerate(self.layers):
            arrays[f"layer{i}.weight"] = layer.weight.astype(np.float32)
            arrays[f"layer{i}.bias"] = layer.bias.astype(np.float32)
        for name, layer in (("pattern", self.pattern), ("cause", self.cause)):
            arrays[f"{name}.weight"] = layer.weight.astype(np.float32)
            arrays[f"{name}.bias"] = layer.bias.astype(np.float32)
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path | io.BytesIO) -> HeadWeights:
        where = str(path) if isinstance(path, Path) else "<head weights>"
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta.json"]).decode())
                if meta.get("format") != HEAD_FORMAT_VERSION:
                    raise BundleError(f"{where}: head format {meta.get('format')} is unknown")
                acts: list[str] = list(meta["activations"])

                def layer(prefix: str, act: str) -> DenseLayer:
                    return DenseLayer(
                        np.asarray(z[f"{prefix}.weight"], np.float32),
                        np.asarray(z[f"{prefix}.bias"], np.float32),
                        act,
                    )

                return cls(
                    layers=tuple(layer(f"layer{i}", a) for i, a in enumerate(acts)),
                    pattern=layer("pattern", "identity"),
                    cause=layer("cause", "identity"),
                )
        except BundleError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"{where}: unreadable head weights ({exc})") from None

    @classmethod
    def from_arrays(
        cls,
        layers: Iterable[tuple[npt.ArrayLike, npt.ArrayLike, str]],
        pattern: tuple[npt.ArrayLike, npt.ArrayLike],
        cause: tuple[npt.ArrayLike, npt.ArrayLike],
    ) -> HeadWeights:
        def f32(a: npt.ArrayLike) -> FloatArray:
            return np.ascontiguousarray(np.asarray(a, dtype=np.float32))

        return cls(
            layers=tuple(DenseLayer(f32(w), f32(b), act) for w, b, act in layers),
            pattern=DenseLayer(f32(pattern[0]), f32(pattern[1]), "identity"),
            cause=DenseLayer(f32(cause[0]), f32(cause[1]), "identity"),
        )
