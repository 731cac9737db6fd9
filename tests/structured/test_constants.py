"""``materialize``: weights computed by constant nodes become initializers.

Small graphs are built by hand with the folded value worked out in a comment; every model is
also run with ONNX Runtime before and after, and must pass ``onnx.checker`` (full check). The
light ResNet-50 and DenseNet-121 of the onnx package (IR 3, opset 9, every weight a
``ConstantOfShape``, DenseNet's batch-norm vectors unsqueezed to ``[C, 1, 1]``) are checked
against the values ONNX Runtime computes for each weight in the original model.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

from onnxprune.structured._constants import materialize
from tests.structured._common import LIGHT, run

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), *, ir: int = 10, opset: int = 17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, ir_version=ir, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name: str, shape, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _const(name: str, array) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=_init(name + "_value", array))


def _materialized(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """A materialized copy of ``model`` and the count; checked valid and ORT-equal to it."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    count = materialize(copy)
    onnx.checker.check_model(copy, full_check=True)
    assert copy.ir_version == model.ir_version
    assert list(copy.opset_import) == list(model.opset_import)
    assert count == len(model.graph.node) - len(copy.graph.node)
    for before, after in zip(run(model, feeds), run(copy, feeds), strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-5)
    return copy, count


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


# --- the light models -------------------------------------------------------------------------


def _load_light(name: str) -> onnx.ModelProto:
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"this onnx build does not ship {path}")
    model = onnx.load(str(path))
    # every fill is 0.02: give each ConstantOfShape its own, so a swapped weight shows
    rng = np.random.default_rng(0)
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape":
            fill = np.array([0.02 * (1 + rng.random())], np.float32)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(fill))
    return model


def _tensors_by_ort(model: onnx.ModelProto, names: list[str], feeds) -> dict[str, np.ndarray]:
    """What ORT computes for tensors ``names`` of ``model`` (made graph outputs of a copy)."""
    inferred = shape_inference.infer_shapes(model)
    types = {vi.name: vi for vi in inferred.graph.value_info}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(types[n] for n in names)
    values = run(probe, feeds)[len(model.graph.output) :]
    return dict(zip(names, values, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "removed"),
    [
        ("resnet50", {"ConstantOfShape": 239}),
        ("densenet121", {"ConstantOfShape": 836, "Unsqueeze": 242}),
    ],
)
def test_light_model(name: str, removed: dict[str, int]) -> None:
    model = _load_light(name)
    stored = {t.name for t in model.graph.initializer}
    # the image; every other input is an initializer (IR 3)
    (data,) = (i for i in model.graph.input if i.name not in stored)
    shape = [d.dim_value for d in data.type.tensor_type.shape.dim]
    feeds = {data.name: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}

    result, count = _materialized(model, feeds)

    assert collections.Counter(_ops(model)) - collections.Counter(_ops(result)) == removed
    assert count == sum(removed.values())
    assert not {"ConstantOfShape", "Unsqueeze"} & set(_ops(result))
    values = _initializers(result)
    produced = {o for n in result.graph.node for o in n.output}
    for node in result.graph.node:  # every weight read is now an initializer
        assert all(i in values or i in produced or i == data.name for i in node.input)
    # gone: the shapes of the fills, and DenseNet's 4 vectors unsqueezed straight from storage
    unsqueezed = {n.input[0] for n in model.graph.node if n.op_type == "Unsqueeze"} & stored
    assert stored - set(values) == {n for n in stored if n.endswith("__SHAPE")} | unsqueezed
    assert len(unsqueezed) == (4 if name == "densenet121" else 0)
    # new: the folded outputs a remaining node reads (not a fill only an Unsqueeze read)
    kept_reads = {i for n in result.graph.node for i in n.input}
    folded = {n.output[0] for n in model.graph.node if n.op_type in removed}
    new = sorted(set(values) - stored)
    assert set(new) == kept_reads & folded
    # IR 3: the graph inputs are the image and exactly the initializers
    assert {i.name for i in result.graph.input} == {data.name, *values}
    for weight, expected in _tensors_by_ort(model, new, feeds).items():
        np.testing.assert_array_equal(values[weight], expected, err_msg=weight)


# --- Unsqueeze and Squeeze: axes an attribute before opset 13, an input from 13 -----------------


def test_constant_unsqueeze_axes_attribute_ir3() -> None:
    # u = Unsqueeze([1, 2, 3], axes=[1, 2]) = [[[1]], [[2]], [[3]]]; y = x * u per channel
    model = _model(
        [
            _const("c", np.array([1.0, 2.0, 3.0], np.float32)),
            helper.make_node("Unsqueeze", ["c"], ["u"], axes=[1, 2]),
            helper.make_node("Mul", ["x", "u"], ["y"]),
        ],
        [_vi("x", [1, 3, 2, 2])],
        [_vi("y", [1, 3, 2, 2])],
        ir=3,
        opset=9,
    )
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    result, count = _materialized(model, {"x": x})

    assert count == 2
    assert _ops(result) == ["Mul"]
    u = _initializers(result)
    assert list(u) == ["u"]  # c was read by the Unsqueeze only
    np.testing.assert_array_equal(u["u"], np.array([1, 2, 3], np.float32).reshape(3, 1, 1))
    # IR 3: the new initializer is a graph input, with its type and shape
    assert [i.name for i in result.graph.input] == ["x", "u"]
    assert result.graph.input[1] == _vi("u", [3, 1, 1])
    (y,) = run(result, {"x": x})
    np.testing.assert_array_equal(y[0], [x[0, 0] * 1, x[0, 1] * 2, x[0, 2] * 3])


def test_constant_unsqueeze_axes_input_opset17() -> None:
    # output rank 1 + 2 = 3: axis -1 is 2, so u has shape [3, 1, 1]; the axes tensor goes too
    model = _model(
        [
            _const("c", np.array([1.0, 2.0, 3.0], np.float32)),
            helper.make_node("Unsqueeze", ["c", "axes"], ["u"]),
            helper.make_node("Mul", ["x", "u"], ["y"]),
        ],
        [_vi("x", [1, 3, 2, 2])],
        [_vi("y", [1, 3, 2, 2])],
        [_init("axes", np.array([-1, 1], np.int64))],
    )
    result, count = _materialized(model, {"x": np.ones((1, 3, 2, 2), np.float32)})

    assert count == 2
    assert _ops(result) == ["Mul"]
    u = _initializers(result)
    assert list(u) == ["u"]
    np.testing.assert_array_equal(u["u"], np.array([1, 2, 3], np.float32).reshape(3, 1, 1))
    assert [i.name for i in result.graph.input] == ["x"]  # IR 10: no input for initializers


@pytest.mark.parametrize("opset", [9, 13])
def test_constant_squeeze(opset: int) -> None:
    # Squeeze([[1, 2, 3]], axes=[0]) = [1, 2, 3]; y = x + [1, 2, 3] row-wise
    axes = np.array([0], np.int64)
    squeeze = (
        helper.make_node("Squeeze", ["c"], ["s"], axes=[0])
        if opset < 13
        else helper.make_node("Squeeze", ["c", "axes"], ["s"])
    )
    model = _model(
        [
            _const("c", np.array([[1.0, 2.0, 3.0]], np.float32)),
            squeeze,
            helper.make_node("Add", ["x", "s"], ["y"]),
        ],
        [_vi("x", [2, 3])],
        [_vi("y", [2, 3])],
        [_init("axes", axes)] if opset >= 13 else [],
        opset=opset,
    )
    result, count = _materialized(model, {"x": np.zeros((2, 3), np.float32)})

    assert count == 2
    assert _initializers(result).keys() == {"s"}
    np.testing.assert_array_equal(_initializers(result)["s"], [1.0, 2.0, 3.0])


# --- Constant -> Cast -> Reshape, and the Constant / ConstantOfShape forms --------------------


def test_constant_cast_reshape() -> None:
    # int32 [[[0], [1], [2]], [[3], [4], [5]]] -> float -> Reshape [0, -1]: 0 copies dim 0 (2),
    # -1 is 6 / 2 = 3, so w = [[0, 1, 2], [3, 4, 5]]; y = [1, 1] @ w = [3, 5, 7]
    model = _model(
        [
            _const("c", np.arange(6, dtype=np.int32).reshape(2, 3, 1)),
            helper.make_node("Cast", ["c"], ["f"], to=F),
            helper.make_node("Reshape", ["f", "shape"], ["w"]),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        [_vi("x", [1, 2])],
        [_vi("y", [1, 3])],
        [_init("shape", np.array([0, -1], np.int64))],
    )
    x = np.ones((1, 2), np.float32)
    result, count = _materialized(model, {"x": x})

    assert count == 3
    assert _ops(result) == ["MatMul"]
    w = _initializers(result)
    assert list(w) == ["w"]
    assert w["w"].dtype == np.float32
    np.testing.assert_array_equal(w["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(run(result, {"x": x})[0], [[3, 5, 7]])


def test_reshape_allowzero_keeps_a_zero_dim() -> None:
    # allowzero=1 (opset 14): the 0 in [0, 3] is a size, so w is an empty [0, 3]; x + w is empty
    model = _model(
        [
            helper.make_node("Reshape", ["W", "shape"], ["w"], allowzero=1),
            helper.make_node("Add", ["x", "w"], ["y"]),
        ],
        [_vi("x", [1, 3])],
        [_vi("y", [0, 3])],
        [_init("W", np.zeros((3, 0), np.float32)), _init("shape", np.array([0, 3], np.int64))],
    )
    result, count = _materialized(model, {"x": np.ones((1, 3), np.float32)})

    assert count == 1
    assert _initializers(result)["w"].shape == (0, 3)
    assert _initializers(result).keys() == {"w"}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"value_float": 1.5}, np.array(1.5, np.float32)),
        ({"value_floats": [1.0, 2.5]}, np.array([1.0, 2.5], np.float32)),
        ({"value_ints": [3, 4]}, np.array([3, 4], np.int64)),
        (
            # linear indices 1 and 2 of a [3] tensor
            {
                "sparse_value": helper.make_sparse_tensor(
                    _init("v", np.array([5.0, 7.0], np.float32)),
                    _init("i", np.array([1, 2], np.int64)),
                    [3],
                )
            },
            np.array([0.0, 5.0, 7.0], np.float32),
        ),
    ],
    ids=["value_float", "value_floats", "value_ints", "sparse_value"],
)
def test_constant_attribute_forms(attrs, expected: np.ndarray) -> None:
    elem = helper.np_dtype_to_tensor_dtype(expected.dtype)
    shape = list(expected.shape) or [2]  # a scalar is added to a [2] input
    model = _model(
        [
            helper.make_node("Constant", [], ["c"], **attrs),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [_vi("x", shape, elem)],
        [_vi("y", shape, elem)],
    )
    x = np.zeros(shape, expected.dtype)
    result, count = _materialized(model, {"x": x})

    assert count == 1
    c = _initializers(result)["c"]
    assert c.dtype == expected.dtype
    np.testing.assert_array_equal(c, expected)


def test_constant_of_shape_defaults_to_float_zero() -> None:
    model = _model(
        [
            helper.make_node("ConstantOfShape", ["s"], ["w"]),
            helper.make_node("Add", ["x", "w"], ["y"]),
        ],
        [_vi("x", [2, 3])],
        [_vi("y", [2, 3])],
        [_init("s", np.array([2, 3], np.int64))],
    )
    result, count = _materialized(model, {"x": np.ones((2, 3), np.float32)})

    assert count == 1
    w = _initializers(result)
    assert w.keys() == {"w"}  # s went with the node
    assert w["w"].dtype == np.float32
    np.testing.assert_array_equal(w["w"], np.zeros((2, 3)))


# --- what stays -------------------------------------------------------------------------------


def _assert_unchanged(model: onnx.ModelProto, feeds) -> None:
    result, count = _materialized(model, feeds)
    assert count == 0
    assert result == model


def test_nodes_reading_a_graph_input_stay() -> None:
    model = _model(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Cast", ["r"], ["c"], to=TensorProto.DOUBLE),
            helper.make_node("Identity", ["c"], ["y"]),
        ],
        [_vi("x", [6])],
        [_vi("y", [2, 3], TensorProto.DOUBLE)],
        [_init("shape", np.array([2, 3], np.int64))],
    )
    _assert_unchanged(model, {"x": np.arange(6, dtype=np.float32)})


def test_graph_output_and_unread_constants_stay() -> None:
    # c is a graph output (also read by the Add); u is read by nothing
    model = _model(
        [
            _const("c", np.array([1.0, 2.0], np.float32)),
            _const("u", np.array([9.0], np.float32)),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [_vi("x", [2])],
        [_vi("y", [2]), _vi("c", [2])],
    )
    _assert_unchanged(model, {"x": np.zeros(2, np.float32)})


def test_dequantize_linear_stays() -> None:
    # the scale's Constant is folded; the DequantizeLinear and its int8 weight stay
    model = _model(
        [
            _const("scale", np.float32(0.5)),
            helper.make_node("DequantizeLinear", ["wq", "scale"], ["w"]),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        [_vi("x", [1, 2])],
        [_vi("y", [1, 2])],
        [_init("wq", np.array([[2, 4], [6, 8]], np.int8))],
    )
    result, count = _materialized(model, {"x": np.ones((1, 2), np.float32)})

    assert count == 1
    assert _ops(result) == ["DequantizeLinear", "MatMul"]
    assert _initializers(result).keys() == {"wq", "scale"}


def test_overridable_initializer_stays() -> None:
    # IR 10: an initializer that is also a graph input is a default the caller may replace
    model = _model(
        [helper.make_node("Identity", ["W"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])],
        [_vi("x", [1, 2]), _vi("W", [2, 2])],
        [_vi("y", [1, 2])],
        [_init("W", np.eye(2, dtype=np.float32))],
    )
    _assert_unchanged(model, {"x": np.ones((1, 2), np.float32)})


def test_shared_shape_initializer_stays_ir3() -> None:
    # s = [2, 3] feeds the ConstantOfShape (folded: w = 0.5 everywhere) and a Reshape of x
    # (stays, so s stays, as a graph input too); y = x.reshape(2, 3) + 0.5
    model = _model(
        [
            helper.make_node(
                "ConstantOfShape", ["s"], ["w"], value=_init("v", np.array([0.5], np.float32))
            ),
            helper.make_node("Reshape", ["x", "s"], ["r"]),
            helper.make_node("Add", ["r", "w"], ["y"]),
        ],
        [_vi("x", [6]), _vi("s", [2], TensorProto.INT64)],
        [_vi("y", [2, 3])],
        [_init("s", np.array([2, 3], np.int64))],
        ir=3,
        opset=9,
    )
    x = np.arange(6, dtype=np.float32)
    result, count = _materialized(model, {"x": x})

    assert count == 1
    assert _ops(result) == ["Reshape", "Add"]
    values = _initializers(result)
    assert values.keys() == {"s", "w"}
    np.testing.assert_array_equal(values["w"], np.full((2, 3), 0.5, np.float32))
    assert [i.name for i in result.graph.input] == ["x", "s", "w"]
    np.testing.assert_array_equal(run(result, {"x": x})[0], x.reshape(2, 3) + 0.5)


def test_folded_output_read_by_a_remaining_node_is_kept() -> None:
    # c feeds the folded Unsqueeze and the Add: both c and u become initializers
    model = _model(
        [
            _const("c", np.array([1.0, 2.0], np.float32)),
            helper.make_node("Unsqueeze", ["c"], ["u"], axes=[0]),
            helper.make_node("Add", ["x", "c"], ["a"]),
            helper.make_node("Mul", ["a", "u"], ["y"]),
        ],
        [_vi("x", [1, 2])],
        [_vi("y", [1, 2])],
        opset=11,
    )
    result, count = _materialized(model, {"x": np.zeros((1, 2), np.float32)})

    assert count == 2
    assert _ops(result) == ["Add", "Mul"]
    values = _initializers(result)
    np.testing.assert_array_equal(values["c"], [1.0, 2.0])
    np.testing.assert_array_equal(values["u"], [[1.0, 2.0]])
