"""Loading an engine bundle: verify the manifest before anything runs.

Checks, in order: the manifest is readable; every listed file exists with its size and sha256
(:func:`waferscope.protocols.bundle.verify`); the encoding is one this pipeline produces; the
class lists are present, unique, and match the head's output widths; the head weights load.
(The engine's own output widths are checked when a model warms up:
:func:`waferscope.protocols.inference.model.start_model`.) Any failure is a
:class:`~waferscope.protocols.bundle.BundleError` whose text says what is wrong, and the caller
keeps the model it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from waferscope.protocols import bundle as bundle_contract
from waferscope.protocols.bundle import BundleError, HeadWeights
from waferscope.protocols.encoding import EncodingSpec
from waferscope.protocols.errors import EncodingError
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole, BundleManifest


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle: where it lies, what it says, and its parts ready to use."""

    folder: Path
    manifest: BundleManifest
    encoding: EncodingSpec
    pattern_classes: tuple[str, ...]
    cause_classes: tuple[str, ...]
    head: HeadWeights
    engine_path: Path  # the INT8 ONNX engine
    reference_path: Path | None  # the FP32 export, when shipped
    tensorrt_engines: tuple[tuple[str, Path], ...]  # (platform, prebuilt TensorRT engine)

    @property
    def model_version(self) -> str:
        return str(self.manifest.model_version)

    @property
    def manifest_sha256(self) -> str:
        return bundle_contract.sha256_file(self.folder / bundle_contract.MANIFEST_NAME)


def load_bundle(folder: Path) -> Bundle:
    """Verify and load a bundle folder (BundleError says what is wrong with a bad one)."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such bundle folder")
    manifest = bundle_contract.verify(folder)
    name = manifest.model_version or folder.name
    try:
        encoding = bundle_contract.encoding_of(manifest)
    except EncodingError as exc:
        raise BundleError(f"bundle {name}: {exc}") from None
    if manifest.encoding_version and manifest.encoding_version != encoding.version:
        raise BundleError(
            f"bundle {name}: encoding_version {manifest.encoding_version} contradicts "
            f"encoding.version {encoding.version}"
        )
    patterns = _class_list(name, "pattern_classes", list(manifest.pattern_classes))
    causes = _class_list(name, "root_cause_classes", list(manifest.root_cause_classes))
    head = HeadWeights.load(
        folder
        / bundle_contract.file_for_role(manifest, BundleFileRole.BUNDLE_FILE_ROLE_HEAD_WEIGHTS)
    )
    if head.pattern.weight.shape[0] != len(patterns):
        raise BundleError(
            f"bundle {name}: the head predicts {head.pattern.weight.shape[0]} patterns, "
            f"the manifest lists {len(patterns)}"
        )
    if head.cause.weight.shape[0] != len(causes):
        raise BundleError(
            f"bundle {name}: the head predicts {head.cause.weight.shape[0]} root causes, "
            f"the manifest lists {len(causes)}"
        )
    engine = folder / bundle_contract.file_for_role(
        manifest, BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX
    )
    reference = None
    trt: list[tuple[str, Path]] = []
    for f in manifest.files:
        if f.role == BundleFileRole.BUNDLE_FILE_ROLE_REFERENCE_ONNX:
            reference = folder / f.path
        elif f.role == BundleFileRole.BUNDLE_FILE_ROLE_TENSORRT_ENGINE:
            trt.append((f.platform, folder / f.path))
    return Bundle(
        folder=folder,
        manifest=manifest,
        encoding=encoding,
        pattern_classes=tuple(patterns),
        cause_classes=tuple(causes),
        head=head,
        engine_path=engine,
        reference_path=reference,
        tensorrt_engines=tuple(trt),
    )


def _class_list(name: str, field: str, classes: list[str]) -> list[str]:
    if not classes:
        raise BundleError(f"bundle {name}: the manifest's {field} is empty")
    if len(set(classes)) != len(classes):
        raise BundleError(f"bundle {name}: the manifest's {field} repeats a class")
    if any(not c for c in classes):
        raise BundleError(f"bundle {name}: the manifest's {field} holds an empty name")
    return classes
