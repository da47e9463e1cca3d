"""Test-time augmentation baked into the engine graph: the 8 symmetries of the square (D4).

Every WM-811K pattern is invariant under quarter turns and mirrors of the wafer, so an engine
that runs all eight views of a map and averages them makes fewer mistakes than one view alone
(measured on the validation split: docs/trainer.md, "Results"). ``add_dihedral_tta`` rewrites
an exported ONNX model (FP32 or INT8 QDQ) so that:

* ``pattern_logits`` and ``cause_logits`` are the **mean of the logits** of the 8 views (the
  mean of logits keeps a folded temperature valid, since the pattern layer is linear);
* ``feature_map`` and ``embedding`` are those of the **original view** only, so Grad-CAM
  (``head.npz`` on the feature map) and similar-case search see the map as it was delivered.

The input and output names, shapes and the dynamic batch are those of the bundle contract
(:mod:`waferscope.protocols.bundle`), so every runner (onnxruntime, TensorRT) and every tool
that reads an engine runs the averaged model unchanged; the engine costs 8x the single view.
The views are data movement only (Slice with step -1 and Transpose), placed before the first
quantisation node, so an INT8 engine is wrapped after quantisation with the same calibration.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final, get_args

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from waferscope.protocols.bundle import INPUT_NAME, OUTPUT_NAMES
from waferscope.protocols.errors import WaferscopeError
from waferscope.trainer.config import TtaMode

TTA_MODES: Final[tuple[str, ...]] = get_args(TtaMode)
VIEWS: Final = 8
AVERAGED: Final = OUTPUT_NAMES[:2]  # pattern_logits, cause_logits
ORIGINAL_VIEW: Final = OUTPUT_NAMES[2:]  # feature_map, embedding
_PREFIX: Final = "tta/"
_DOC: Final = (
    "waferscope: logits averaged over the 8 dihedral views (D4 test-time augmentation); "
    "feature_map and embedding of the original view"
)


class TtaError(WaferscopeError):
    """The model cannot be wrapped (wrong inputs or outputs, non-square input, already wrapped)."""


def dihedral_views(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The 8 views of a (N, C, S, S) batch stacked view-major: (8N, C, S, S), as the graph does.

    Order: identity, flip rows, flip columns, both, then the same four transposed.
    """
    flip_h = x[:, :, ::-1, :]
    flip_w = x[:, :, :, ::-1]
    flip_hw = x[:, :, ::-1, ::-1]
    plain = [x, flip_h, flip_w, flip_hw]
    views = plain + [v.transpose(0, 1, 3, 2) for v in plain]
    return np.ascontiguousarray(np.concatenate(views, axis=0), dtype=np.float32)


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise TtaError("the model imports no ai.onnx opset")


def _check(model: onnx.ModelProto) -> tuple[int, int]:
    """(opset, side of the square input); raises TtaError."""
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise TtaError(f"expected one input {INPUT_NAME!r}, found {[i.name for i in inputs]}")
    outputs = [o.name for o in graph.output]
    if outputs != list(OUTPUT_NAMES):
        raise TtaError(f"expected outputs {list(OUTPUT_NAMES)}, found {outputs}")
    if has_dihedral_tta(model):
        raise TtaError("the model already averages test-time views")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
        raise TtaError("the input must be (batch, channels, S, S) with a fixed S")
    if dims[2].dim_value != dims[3].dim_value:
        raise TtaError(f"the input is {dims[2].dim_value}x{dims[3].dim_value}, not square")
    return _opset(model), int(dims[2].dim_value)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def add_dihedral_tta(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that averages the logits of the 8 D4 views (see the module text)."""
    opset, side = _check(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    p = _PREFIX
    views = p + "views"
    _rename(graph, INPUT_NAME, views)
    for name in OUTPUT_NAMES:
        _rename(graph, name, p + name)

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), p + name))
        return p + name

    # A reversed slice from the last element to -(side + 1), i.e. through the first one; a small
    # end (not int64 min) stays exact where a runtime narrows indices to int32 (TensorRT).
    start, end = const("start", [-1]), const("end", [-(side + 1)])
    step, axis_h, axis_w = const("step", [-1]), const("axis_h", [2]), const("axis_w", [3])
    zero, one = const("zero", [0]), const("one", [1])
    shape_head = const("views_n", [VIEWS])
    minus_one = const("minus_one", [-1])

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> onnx.NodeProto:
        name = output if output.startswith(p) else p + output  # every added node is tta/...
        return helper.make_node(op, inputs, [output], name, **attrs)

    flip_h, flip_w, flip_hw = p + "flip_h", p + "flip_w", p + "flip_hw"
    plain = [INPUT_NAME, flip_h, flip_w, flip_hw]
    transposed = [p + f"transposed{i}" for i in range(len(plain))]
    head = [
        node("Slice", [INPUT_NAME, start, end, axis_h, step], flip_h),
        node("Slice", [INPUT_NAME, start, end, axis_w, step], flip_w),
        node("Slice", [flip_h, start, end, axis_w, step], flip_hw),
        *(
            node("Transpose", [a], t, perm=[0, 1, 3, 2])
            for a, t in zip(plain, transposed, strict=True)
        ),
        node("Concat", plain + transposed, views, axis=0),
    ]
    # batch = shape(input)[0:1]; averaged outputs: reshape (8, batch, -1) and mean over views.
    batch, grouped = p + "batch", p + "grouped"
    tail = [
        node("Shape", [INPUT_NAME], p + "shape"),
        node("Slice", [p + "shape", zero, one], batch),
        node("Concat", [shape_head, batch, minus_one], grouped, axis=0),
    ]
    for name in AVERAGED:
        tail.append(node("Reshape", [p + name, grouped], p + name + "/grouped"))
        if opset >= 18:
            tail.append(node("ReduceMean", [p + name + "/grouped", zero], name, keepdims=0))
        else:
            tail.append(node("ReduceMean", [p + name + "/grouped"], name, axes=[0], keepdims=0))
    for name in ORIGINAL_VIEW:
        tail.append(node("Slice", [p + name, zero, batch, zero], name))
    # Inputs are consumed before the old graph runs; outputs are produced after it.
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(head + existing + tail)
    out.doc_string = f"{model.doc_string}\n{_DOC}" if model.doc_string else _DOC
    onnx.checker.check_model(out)
    return out


def has_dihedral_tta(model: onnx.ModelProto) -> bool:
    """Whether ``model`` was wrapped by :func:`add_dihedral_tta`."""
    return any(n.name.startswith(_PREFIX) for n in model.graph.node)


def remove_dihedral_tta(model: onnx.ModelProto) -> onnx.ModelProto:
    """The single-view engine inside a wrapped one (for side-by-side measurements)."""
    if not has_dihedral_tta(model):
        raise TtaError("the model does not average test-time views")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept = [n for n in graph.node if not n.name.startswith(_PREFIX)]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if not t.name.startswith(_PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    _rename(graph, _PREFIX + "views", INPUT_NAME)
    for name in OUTPUT_NAMES:
        _rename(graph, _PREFIX + name, name)
    doc = out.doc_string.removesuffix(_DOC).removesuffix("\n")
    if doc:
        out.doc_string = doc
    else:
        out.ClearField("doc_string")
    onnx.checker.check_model(out)
    return out


def tta_file(source: Path, target: Path, mode: TtaMode) -> None:
    """Write ``source`` to ``target`` wrapped for ``mode`` ('none' copies it)."""
    if mode not in TTA_MODES:
        raise TtaError(f"unknown test-time augmentation {mode!r}; expected one of {TTA_MODES}")
    if mode == "none":
        shutil.copyfile(source, target)
        return
    onnx.save(add_dihedral_tta(onnx.load(str(source))), str(target))


def describe(mode: TtaMode) -> dict[str, object]:
    """The bundle's ``model.json`` entry for ``mode``."""
    if mode == "none":
        return {"mode": "none", "views": 1}
    return {
        "mode": "d4",
        "views": VIEWS,
        "averaged": list(AVERAGED),
        "reduce": "mean of logits over identity, row flip, column flip, both, and their transposes",
        "original_view_only": list(ORIGINAL_VIEW),
    }
