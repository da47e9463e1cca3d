"""Bundle contract: manifest round-trip and verification, head weights and their gradient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols.bundle import (
    ACTIVATIONS,
    MANIFEST_NAME,
    BundleError,
    HeadWeights,
    describe_file,
    encoding_descriptor,
    encoding_of,
    file_for_role,
    read_manifest,
    verify,
    write_manifest,
)
from waferscope.protocols.encoding import V1, EncodingSpec
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole, BundleManifest


def random_head(rng: np.random.Generator, acts: tuple[str, ...] = ("silu", "relu")) -> HeadWeights:
    sizes = [16, 12, 10][: len(acts) + 1]
    layers = [
        (rng.normal(size=(sizes[i + 1], sizes[i])), rng.normal(size=sizes[i + 1]), act)
        for i, act in enumerate(acts)
    ]
    width = sizes[len(acts)]
    return HeadWeights.from_arrays(
        layers,
        pattern=(rng.normal(size=(9, width)), rng.normal(size=9)),
        cause=(rng.normal(size=(6, width)), rng.normal(size=6)),
    )


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_pattern_gradient_matches_finite_differences(act: str) -> None:
    rng = np.random.default_rng(1)
    head = random_head(rng, (act, "relu"))
    emb = rng.normal(size=(3, 16)).astype(np.float32)
    classes = [0, 4, 8]
    grad = head.pattern_gradient(emb, classes)
    eps = 1e-3
    for n, c in enumerate(classes):
        for k in range(16):
            plus, minus = emb[n : n + 1].astype(np.float64), emb[n : n + 1].astype(np.float64)
            plus = plus.copy()
            minus = minus.copy()
            plus[0, k] += eps
            minus[0, k] -= eps
            num = (
                head.logits(plus.astype(np.float32))[0][0, c]
                - head.logits(minus.astype(np.float32))[0][0, c]
            ) / (2 * eps)
            assert grad[n, k] == pytest.approx(float(num), rel=3e-2, abs=3e-2)


def test_head_without_dense_layers_has_the_class_weights_as_gradient() -> None:
    rng = np.random.default_rng(2)
    head = HeadWeights.from_arrays(
        [], (rng.normal(size=(9, 8)), np.zeros(9)), (rng.normal(size=(4, 8)), np.zeros(4))
    )
    np.testing.assert_allclose(
        head.pattern_gradient(np.ones((1, 8)), [3])[0], head.pattern.weight[3]
    )


def test_head_save_load_round_trip(tmp_path: Path) -> None:
    head = random_head(np.random.default_rng(3))
    head.save(tmp_path / "head.npz")
    back = HeadWeights.load(tmp_path / "head.npz")
    emb = np.random.default_rng(4).normal(size=(2, 16)).astype(np.float32)
    for a, b in zip(head.logits(emb), back.logits(emb), strict=True):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="unreadable"):
        HeadWeights.load(tmp_path / "bad.npz")


def test_head_rejects_mismatched_shapes() -> None:
    with pytest.raises(BundleError, match="inputs"):
        HeadWeights.from_arrays(
            [(np.ones((4, 8)), np.ones(4), "relu")],
            (np.ones((9, 5)), np.ones(9)),
            (np.ones((2, 5)), np.ones(2)),
        )


def make_bundle(folder: Path) -> BundleManifest:
    (folder / "model.int8.onnx").write_bytes(b"engine bytes")
    random_head(np.random.default_rng(5)).save(folder / "head.npz")
    m = BundleManifest(model_version="test-1", pattern_classes=["a", "b"])
    encoding_descriptor(V1, m)
    m.files.extend(
        [
            describe_file(folder, "model.int8.onnx", BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX),
            describe_file(folder, "head.npz", BundleFileRole.BUNDLE_FILE_ROLE_HEAD_WEIGHTS),
        ]
    )
    write_manifest(folder, m)
    return m


def test_manifest_round_trip_and_verification(tmp_path: Path) -> None:
    m = make_bundle(tmp_path)
    back = verify(tmp_path)
    assert back == m
    assert encoding_of(back) == V1
    assert file_for_role(back, BundleFileRole.BUNDLE_FILE_ROLE_HEAD_WEIGHTS) == "head.npz"
    with pytest.raises(BundleError, match="TENSORRT"):
        file_for_role(back, BundleFileRole.BUNDLE_FILE_ROLE_TENSORRT_ENGINE)

    (tmp_path / "model.int8.onnx").write_bytes(b"engine bytez")  # same size, other bytes
    with pytest.raises(BundleError, match="sha256"):
        verify(tmp_path)
    (tmp_path / "model.int8.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        verify(tmp_path)


def test_bad_manifests_are_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="not a valid"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"modelVersion": "x"}')
    with pytest.raises(BundleError, match="no files"):
        verify(tmp_path)
    with pytest.raises(BundleError, match="encoding"):
        encoding_of(read_manifest(tmp_path))
    with pytest.raises(BundleError, match="relative"):
        describe_file(tmp_path, "../etc/passwd", BundleFileRole.BUNDLE_FILE_ROLE_OTHER)
    m = BundleManifest()
    encoding_descriptor(EncodingSpec(size=96), m)
    assert encoding_of(m).size == 96
