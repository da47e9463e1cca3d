"""Test-time augmentation baked into engines: real onnxruntime sessions on real graphs.

The wrapped graph must equal "run the 8 views through the original engine and average the
logits", keep the original view's feature map and embedding, keep the bundle contract (names,
dynamic batch), and give the same averaged logits for every rotation or mirror of a map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from waferscope.protocols import bundle as contract
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_batch
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.tta import (
    TtaError,
    add_dihedral_tta,
    dihedral_views,
    has_dihedral_tta,
    remove_dihedral_tta,
    tta_file,
)

SHIPPED = Path(__file__).resolve().parents[2] / "edge/src/waferscope/edge/bundles/default"


def contract_graph(opset: int, size: int = 6, rng_seed: int = 0) -> onnx.ModelProto:
    """A small hand-built engine with the contract's I/O whose logits are not symmetric."""
    rng = np.random.default_rng(rng_seed)
    flat = 3 * size * size
    inits = [
        numpy_helper.from_array(rng.normal(size=(flat, 9)).astype(np.float32), "wp"),
        numpy_helper.from_array(rng.normal(size=(flat, 7)).astype(np.float32), "wc"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
    ]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "wp"], ["pattern_logits"]),
        helper.make_node("MatMul", ["flat", "wc"], ["cause_logits"]),
        helper.make_node("Relu", ["input"], ["feature_map"]),
    ]
    if opset >= 18:
        mean = helper.make_node("ReduceMean", ["feature_map", "hw"], ["embedding"], keepdims=0)
    else:
        mean = helper.make_node(
            "ReduceMean", ["feature_map"], ["embedding"], axes=[2, 3], keepdims=0
        )
    nodes.append(mean)

    def out(name: str, *dims: int | str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))

    graph = helper.make_graph(
        nodes,
        "contract",
        [out("input", "batch", 3, size, size)],
        [
            out("pattern_logits", "batch", 9),
            out("cause_logits", "batch", 7),
            out("feature_map", "batch", 3, size, size),
            out("embedding", "batch", 3),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _check_against_views(plain: OnnxEngine, wrapped: OnnxEngine, x: np.ndarray) -> None:
    n = len(x)
    ref = plain.run(dihedral_views(x))
    got = wrapped.run(x)
    assert [g.shape[0] for g in got] == [n] * 4
    for i in (0, 1):  # logits: the mean over the 8 views
        mean = ref[i].reshape(8, n, -1).mean(axis=0)
        np.testing.assert_allclose(got[i], mean, rtol=1e-5, atol=1e-5)
    for i in (2, 3):  # feature map and embedding: the original view
        np.testing.assert_allclose(got[i], ref[i][:n], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
def test_wrapped_graph_averages_the_eight_views(tmp_path: Path, opset: int) -> None:
    model = contract_graph(opset)
    plain = OnnxEngine(_save(model, tmp_path / "plain.onnx"), threads=1)
    wrapped = OnnxEngine(_save(add_dihedral_tta(model), tmp_path / "tta.onnx"), threads=1)
    rng = np.random.default_rng(1)
    for batch in (1, 3, 16):  # dynamic batch survives the wrapping
        _check_against_views(plain, wrapped, rng.random((batch, 3, 6, 6), dtype=np.float32))
    # Unwrapping gives back the original graph.
    assert has_dihedral_tta(onnx.load(str(tmp_path / "tta.onnx")))
    assert remove_dihedral_tta(add_dihedral_tta(model)) == model
    # The 8 views differ for this graph, so averaging really changed the logits.
    x = rng.random((2, 3, 6, 6), dtype=np.float32)
    assert not np.allclose(plain.run(x)[0], wrapped.run(x)[0])


def test_views_are_the_eight_symmetries_of_the_square() -> None:
    x = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    views = dihedral_views(x).reshape(8, 2, 1, 3, 3)
    np.testing.assert_array_equal(views[0], x)
    expected = [np.rot90(x, k, (2, 3)) for k in range(4)]
    expected += [np.rot90(x[:, :, :, ::-1], k, (2, 3)) for k in range(4)]
    as_bytes = {v.tobytes() for v in views}
    assert len(as_bytes) == 8 and as_bytes == {np.ascontiguousarray(e).tobytes() for e in expected}


def test_shipped_int8_engine_wrapped_is_exact_and_rotation_invariant(
    tmp_path: Path, data_dir: Path
) -> None:
    shipped = onnx.load(str(SHIPPED / "model.int8.onnx"))
    single = remove_dihedral_tta(shipped) if has_dihedral_tta(shipped) else shipped
    if has_dihedral_tta(shipped):  # the shipped engine is exactly this wrapping of its single view
        assert add_dihedral_tta(single) == shipped
    engine = _save(single, tmp_path / "single.int8.onnx")
    plain = OnnxEngine(engine, threads=1)
    target = tmp_path / "tta.int8.onnx"
    tta_file(engine, target, "d4")
    wrapped = OnnxEngine(target, threads=1)
    arrays = load_labelled_arrays(data_dir / "wm811k" / "val.npz")
    spec = contract.encoding_of(contract.read_manifest(SHIPPED))
    x = encode_batch(arrays.maps[:6], spec)
    _check_against_views(plain, wrapped, x)
    # Any quarter turn or mirror of the input gives the same averaged logits.
    base = wrapped.run(x)[0]
    for view in dihedral_views(x).reshape(8, *x.shape)[1:]:
        np.testing.assert_allclose(wrapped.run(np.ascontiguousarray(view))[0], base, atol=1e-4)


def test_refuses_what_it_cannot_wrap(tmp_path: Path) -> None:
    model = contract_graph(17)
    wrapped = add_dihedral_tta(model)
    with pytest.raises(TtaError, match="already averages"):
        add_dihedral_tta(wrapped)
    with pytest.raises(TtaError, match="does not average"):
        remove_dihedral_tta(model)
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    renamed.graph.output[3].name = "pooled"
    with pytest.raises(TtaError, match="expected outputs"):
        add_dihedral_tta(renamed)
    model_rect = contract_graph(17)
    model_rect.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 5
    with pytest.raises(TtaError, match="not square"):
        add_dihedral_tta(model_rect)
    src = _save(model, tmp_path / "m.onnx")
    with pytest.raises(TtaError, match="unknown test-time augmentation"):
        tta_file(src, tmp_path / "out.onnx", "d8")  # type: ignore[arg-type]
    tta_file(src, tmp_path / "same.onnx", "none")
    assert onnx.load(str(tmp_path / "same.onnx")) == model


@pytest.mark.slow
def test_bundle_with_tta(trained_run: Path, tmp_path: Path, small_val: Path) -> None:
    from waferscope.trainer.bundler import build_bundle

    out = tmp_path / "tta-bundle"
    result = build_bundle(
        trained_run, out, val=[small_val], include_fp32=True, model_version="tiny-tta", tta="d4"
    )
    contract.verify(out)
    doc = json.loads((out / "model.json").read_text())
    assert doc["test_time_augmentation"]["mode"] == "d4"
    assert doc["test_time_augmentation"]["views"] == 8
    card = (out / "MODEL_CARD.md").read_text()
    assert "Test-time augmentation" in card and "--tta d4" in card
    assert result.parity is not None and result.parity.n == 100
    x = np.random.default_rng(3).random((4, 3, 64, 64), dtype=np.float32)
    for name in ("model.int8.onnx", "model.fp32.onnx"):
        engine = OnnxEngine(out / name, threads=1)
        base = engine.run(x)[0]
        turned = np.ascontiguousarray(np.rot90(x, 1, (2, 3)))
        np.testing.assert_allclose(engine.run(turned)[0], base, atol=1e-3)
