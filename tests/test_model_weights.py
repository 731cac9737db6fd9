"""Weight discovery: ``onnxprune.model.ConstantResolver`` and ``WeightSource.to_stored``.

Each case is a small graph whose prunable layer reads its weight ``w`` through the chain an
exporter makes; the expected value is worked out with numpy from the stored tensor, and
``layout`` is the stored-to-consumed layout change written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.weights import ConstantResolver, WeightSource

W23 = np.arange(6, dtype=np.float32).reshape(2, 3)  # [[0, 1, 2], [3, 4, 5]]
W234 = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
WQ = np.array([[-2, 0, 4], [1, 3, -1]], dtype=np.int8)


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _resolver(
    op: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    extra_inputs: tuple[str, ...] = (),
) -> ConstantResolver:
    """A graph where layer ``op`` reads activation ``x`` and weight ``w``; returns its resolver."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in extra_inputs]
    layer = helper.make_node(op, ["x", "w"], ["y"], name="layer")
    graph = helper.make_graph(
        [*nodes, layer],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    return ConstantResolver(model.graph)


@dataclass
class Case:
    op: str
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    source: WeightSource
    value: np.ndarray
    layout: Callable[[np.ndarray], np.ndarray] = field(default=lambda a: a)


def _node(op: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], **attrs)


W62 = np.arange(12, dtype=np.float32).reshape(6, 2)


def _reordering(
    data: str, output: str, ranges: list[tuple[int, int]], axis: int = 0
) -> list[onnx.NodeProto]:
    """``Concat`` (on ``axis``) of ``Slice``s of ``data`` along axis 0, ``ranges`` in order."""
    slices = [
        _node("Slice", [data, f"s{a}", f"e{b}", "a0"], f"{output}_{i}")
        for i, (a, b) in enumerate(ranges)
    ]
    return [*slices, _node("Concat", [s.output[0] for s in slices], output, axis=axis)]


def _bounds(ranges: list[tuple[int, int]]) -> list[onnx.TensorProto]:
    """The starts, ends and axis (0) initializers the Slices of ``_reordering`` read."""
    names = {f"s{a}": a for a, _ in ranges} | {f"e{b}": b for _, b in ranges} | {"a0": 0}
    return [_init(name, np.array([v], np.int64)) for name, v in names.items()]


CASES = {
    "initializer": Case("Gemm", [], [_init("w", W23)], WeightSource("w", "initializer"), W23),
    "constant": Case(
        "MatMul",
        [_node("Constant", [], "w", value=_init("c", W23))],
        [],
        WeightSource("w", "Constant"),
        W23,
    ),
    "constant_of_shape": Case(
        "Conv",
        [_node("ConstantOfShape", ["s"], "w", value=_init("v", np.array([0.25], np.float32)))],
        [_init("s", np.array([2, 3, 1, 1], np.int64))],
        WeightSource("w", "ConstantOfShape"),
        np.full((2, 3, 1, 1), 0.25, np.float32),
    ),
    "constant_of_shape_default_zero": Case(
        "Gemm",
        [_node("ConstantOfShape", ["s"], "w")],
        [_init("s", np.array([2, 3], np.int64))],
        WeightSource("w", "ConstantOfShape"),
        np.zeros((2, 3), np.float32),
    ),
    "identity": Case(
        "Gemm",
        [_node("Identity", ["W"], "w")],
        [_init("W", W23)],
        WeightSource("W", "initializer"),
        W23,
    ),
    "cast": Case(
        "MatMul",
        [_node("Cast", ["W"], "w", to=TensorProto.FLOAT16)],
        [_init("W", W23)],
        WeightSource("W", "initializer"),
        W23.astype(np.float16),
    ),
    "transpose_perm": Case(
        "MatMul",
        [_node("Transpose", ["W"], "w", perm=[2, 0, 1])],  # not its own inverse
        [_init("W", W234)],
        WeightSource("W", "initializer", (("transpose", (2, 0, 1)),)),
        np.transpose(W234, (2, 0, 1)),  # shape (4, 2, 3)
        lambda a: np.transpose(a, (2, 0, 1)),
    ),
    "transpose_default": Case(
        "Gemm",
        [_node("Transpose", ["W"], "w")],  # no perm: reverse the axes
        [_init("W", W234)],
        WeightSource("W", "initializer", (("transpose", (2, 1, 0)),)),
        np.transpose(W234, (2, 1, 0)),
        lambda a: np.transpose(a, (2, 1, 0)),
    ),
    "dequantize_per_tensor": Case(
        "MatMul",
        [_node("DequantizeLinear", ["Wq", "scale", "zero"], "w")],
        [_init("Wq", WQ), _init("scale", np.float32(0.5)), _init("zero", np.int8(2))],
        WeightSource("Wq", "initializer", dequantized=True),
        # (WQ - 2) * 0.5
        np.array([[-2.0, -1.0, 1.0], [-0.5, 0.5, -1.5]], np.float32),
    ),
    "dequantize_per_axis": Case(
        "Conv",
        [_node("DequantizeLinear", ["Wq", "scale", "zero"], "w", axis=0)],
        [
            _init("Wq", np.array([1, 2, 3, 4, 5, 6], np.int8).reshape(2, 3, 1, 1)),
            _init("scale", np.array([0.5, 2.0], np.float32)),
            _init("zero", np.array([0, 1], np.int8)),
        ],
        WeightSource("Wq", "initializer", dequantized=True),
        # row 0: [1, 2, 3] * 0.5; row 1: ([4, 5, 6] - 1) * 2
        np.array([0.5, 1.0, 1.5, 6.0, 8.0, 10.0], np.float32).reshape(2, 3, 1, 1),
    ),
    "dequantize_per_axis_default_axis_no_zero": Case(
        "Gemm",
        [_node("DequantizeLinear", ["Wq", "scale"], "w")],  # axis defaults to 1
        [
            _init("Wq", np.array([[1, 2, 3], [4, 5, 6]], np.uint8)),
            _init("scale", np.array([1.0, 2.0, 4.0], np.float32)),
        ],
        WeightSource("Wq", "initializer", dequantized=True),
        np.array([[1.0, 4.0, 12.0], [4.0, 10.0, 24.0]], np.float32),
    ),
    "reshape": Case(
        "MatMul",
        [_node("Reshape", ["W", "shape"], "w")],
        [_init("W", W234), _init("shape", np.array([4, -1], np.int64))],
        WeightSource("W", "initializer", (("reshape", (2, 3, 4)),)),
        W234.reshape(4, 6),
        lambda a: a.reshape(4, 6),
    ),
    "reshape_zero_from_constant": Case(
        "MatMul",
        [
            _node("Constant", [], "shape", value=_init("c", np.array([0, -1], np.int64))),
            _node("Reshape", ["W", "shape"], "w"),
        ],
        [_init("W", W234)],
        WeightSource("W", "initializer", (("reshape", (2, 3, 4)),)),
        W234.reshape(2, 12),  # 0 copies the input's dim 0
        lambda a: a.reshape(2, 12),
    ),
    "unsqueeze_axes_attribute": Case(  # before opset 13
        "Conv",
        [_node("Unsqueeze", ["W"], "w", axes=[2, 3])],
        [_init("W", W23)],
        WeightSource("W", "initializer", (("reshape", (2, 3)),)),
        W23.reshape(2, 3, 1, 1),
        lambda a: a.reshape(2, 3, 1, 1),
    ),
    "unsqueeze_axes_input_negative": Case(  # from opset 13
        "MatMul",
        [_node("Unsqueeze", ["W", "axes"], "w")],
        [_init("W", W23), _init("axes", np.array([-1, 0], np.int64))],
        WeightSource("W", "initializer", (("reshape", (2, 3)),)),
        W23.reshape(1, 2, 3, 1),  # output rank 4: -1 is axis 3
        lambda a: a.reshape(1, 2, 3, 1),
    ),
    "squeeze_axes_input": Case(
        "Gemm",
        [_node("Squeeze", ["W", "axes"], "w")],
        [_init("W", W23.reshape(2, 1, 3)), _init("axes", np.array([1], np.int64))],
        WeightSource("W", "initializer", (("reshape", (2, 1, 3)),)),
        W23,
        lambda a: a.reshape(2, 3),
    ),
    "squeeze_without_axes": Case(  # every axis of size 1
        "Gemm",
        [_node("Squeeze", ["W"], "w")],
        [_init("W", W23.reshape(1, 2, 1, 3))],
        WeightSource("W", "initializer", (("reshape", (1, 2, 1, 3)),)),
        W23,
        lambda a: a.reshape(2, 3),
    ),
    "chain_constant_of_shape_unsqueeze": Case(  # the light DenseNet's batch-norm vectors
        "Mul",
        [
            _node("ConstantOfShape", ["s"], "c", value=_init("v", np.array([0.5], np.float32))),
            _node("Unsqueeze", ["c"], "w", axes=[1, 2]),
        ],
        [_init("s", np.array([3], np.int64))],
        WeightSource("c", "ConstantOfShape", (("reshape", (3,)),)),
        np.full((3, 1, 1), 0.5, np.float32),
        lambda a: a.reshape(3, 1, 1),
    ),
    "chain_dequantize_transpose_reshape": Case(
        "Gemm",
        [
            _node("DequantizeLinear", ["Wq", "scale"], "deq"),
            _node("Transpose", ["deq"], "t", perm=[1, 0, 2]),
            _node("Reshape", ["t", "shape"], "w"),
        ],
        [
            _init("Wq", np.arange(-6, 6, dtype=np.int8).reshape(2, 3, 2)),
            _init("scale", np.float32(0.5)),
            _init("shape", np.array([3, 4], np.int64)),
        ],
        WeightSource("Wq", "initializer", (("transpose", (1, 0, 2)), ("reshape", (3, 2, 2))), True),
        (np.arange(-6, 6, dtype=np.float32).reshape(2, 3, 2) * 0.5)
        .transpose(1, 0, 2)
        .reshape(3, 4),
        lambda a: a.transpose(1, 0, 2).reshape(3, 4),
    ),
    "chain_constant_cast_identity_transpose": Case(
        "MatMul",
        [
            _node("Constant", [], "c", value=_init("v", W23.astype(np.int32))),
            _node("Cast", ["c"], "f", to=TensorProto.FLOAT),
            _node("Identity", ["f"], "i"),
            _node("Transpose", ["i"], "w", perm=[1, 0]),
        ],
        [],
        WeightSource("c", "Constant", (("transpose", (1, 0)),)),
        W23.T,
        lambda a: a.T,
    ),
    "chain_reshape_transpose": Case(
        "Gemm",
        [_node("Reshape", ["W", "shape"], "r"), _node("Transpose", ["r"], "w")],
        [_init("W", W234), _init("shape", np.array([6, 4], np.int64))],
        WeightSource("W", "initializer", (("reshape", (2, 3, 4)), ("transpose", (1, 0)))),
        W234.reshape(6, 4).T,
        lambda a: a.reshape(6, 4).T,
    ),
    "reordered_rows": Case(  # the TorchScript exporter's LSTM gate reordering, unfolded
        "MatMul",
        _reordering("W", "w", [(0, 2), (4, 6), (2, 4)]),
        [_init("W", W62), *_bounds([(0, 2), (4, 6), (2, 4)])],
        WeightSource("W", "initializer", (("take", (0, 0, 1, 4, 5, 2, 3)),)),
        W62[[0, 1, 4, 5, 2, 3]],
        lambda a: a[[0, 1, 4, 5, 2, 3]],
    ),
    "reordered_then_unsqueezed": Case(
        "MatMul",
        [
            *_reordering("W", "r", [(3, 6), (0, 3)]),
            _node("Unsqueeze", ["r", "axis0"], "w"),
        ],
        [_init("W", W62), _init("axis0", np.array([0], np.int64)), *_bounds([(3, 6), (0, 3)])],
        WeightSource("W", "initializer", (("take", (0, 3, 4, 5, 0, 1, 2)), ("reshape", (6, 2)))),
        W62[[3, 4, 5, 0, 1, 2]][None],
        lambda a: a[[3, 4, 5, 0, 1, 2]][None],
    ),
    "chain_constant_of_shape_transpose": Case(
        "MatMul",
        [
            _node("ConstantOfShape", ["s"], "c", value=_init("v", np.array([1.5], np.float32))),
            _node("Transpose", ["c"], "w"),
        ],
        [_init("s", np.array([2, 3], np.int64))],
        WeightSource("c", "ConstantOfShape", (("transpose", (1, 0)),)),
        np.full((3, 2), 1.5, np.float32),
        lambda a: a.T,
    ),
}


@pytest.fixture(params=CASES.values(), ids=CASES.keys())
def case(request) -> tuple[Case, ConstantResolver]:
    c = request.param
    return c, _resolver(c.op, c.nodes, c.initializers)


def test_source(case):
    c, r = case
    assert r.source("w") == c.source
    assert r.is_constant("w")


def test_value(case):
    c, r = case
    value = r.value("w")
    np.testing.assert_array_equal(value, c.value)
    assert value.dtype == c.value.dtype


def test_shape(case):
    c, r = case
    assert r.shape("w") == c.value.shape


def test_to_stored_maps_consumed_layout_back(case):
    c, r = case
    source = r.source("w")
    stored_shape = r.value(source.name).shape
    consumed = np.arange(c.value.size).reshape(c.value.shape)
    stored = source.to_stored(consumed)
    assert stored.shape == stored_shape
    assert r.shape(source.name) == stored_shape
    np.testing.assert_array_equal(c.layout(stored), consumed)


@pytest.mark.parametrize(
    ("ranges", "extra", "why"),
    [
        ([(0, 2), (0, 2), (2, 6)], [], "an entry twice"),
        ([(0, 2), (4, 6)], [], "entries missing"),
        ([(0, 2), (4, 6), (2, 4)], [_node("Relu", ["w_1"], "side")], "a part read elsewhere"),
    ],
)
def test_a_concat_of_slices_that_is_no_reordering_is_not_a_weight(ranges, extra, why):
    nodes = [*_reordering("W", "w", ranges), *extra]
    r = _resolver("MatMul", nodes, [_init("W", W62), *_bounds(ranges)])
    assert r.source("w") is None, why
    assert r.value("w") is None  # nor a value: a Slice alone is not computed


def test_a_concat_across_the_sliced_axis_is_no_reordering():
    ranges = [(0, 3), (3, 6)]  # rows sliced, then joined side by side: [3, 4]
    nodes = _reordering("W", "w", ranges, axis=1)
    r = _resolver("MatMul", nodes, [_init("W", W62), *_bounds(ranges)])
    assert r.source("w") is None


def test_a_concat_of_constants_has_a_value_but_is_no_weight():
    # An LSTM's bias, unfolded: both halves joined (ONNX's B is [Wb, Rb]).
    nodes = [_node("Concat", ["b1", "b2"], "w", axis=0)]
    r = _resolver("MatMul", nodes, [_init("b1", W23), _init("b2", W23 + 6)])
    np.testing.assert_array_equal(r.value("w"), np.arange(12, dtype=np.float32).reshape(4, 3))
    assert r.source("w") is None


def test_consumed_index_follows_a_reordering():
    # stored [6, 2] -> rows in the order 2, 0, 1, 5, 3, 4 -> reshaped to [3, 4]
    source = WeightSource(
        "W", "initializer", (("take", (0, 2, 0, 1, 5, 3, 4)), ("reshape", (6, 2)))
    )
    stored = np.arange(12).reshape(6, 2)
    consumed = source.to_consumed(stored, (3, 4))
    np.testing.assert_array_equal(consumed.reshape(6, 2), stored[[2, 0, 1, 5, 3, 4]])
    flat = np.arange(12)
    np.testing.assert_array_equal(consumed.reshape(-1)[source.consumed_index(flat, (3, 4))], flat)
    np.testing.assert_array_equal(source.to_stored(consumed), stored)
    assert source.stored_shape((3, 4)) == (6, 2)


# --- to_stored worked by hand -----------------------------------------------------------------


def test_to_stored_transpose_by_hand():
    source = WeightSource("W", "initializer", (("transpose", (1, 0)),))
    consumed = np.arange(6).reshape(3, 2)  # [[0, 1], [2, 3], [4, 5]]
    np.testing.assert_array_equal(source.to_stored(consumed), [[0, 2, 4], [1, 3, 5]])


def test_to_stored_uses_the_inverse_permutation():
    # stored (2, 3, 1) -> perm (2, 0, 1) -> consumed (1, 2, 3), consumed[0, i, j] = stored[i, j, 0]
    source = WeightSource("W", "initializer", (("transpose", (2, 0, 1)),))
    consumed = np.arange(6).reshape(1, 2, 3)
    np.testing.assert_array_equal(source.to_stored(consumed), np.arange(6).reshape(2, 3, 1))


def test_to_stored_undoes_steps_last_first():
    # stored (2, 3) -> reshape to (3, 2) -> transpose -> consumed (2, 3)
    source = WeightSource("W", "initializer", (("reshape", (2, 3)), ("transpose", (1, 0))))
    consumed = np.array([[0, 1, 2], [3, 4, 5]])
    # undo the transpose: [[0, 3], [1, 4], [2, 5]]; undo the reshape: (2, 3) row-major
    np.testing.assert_array_equal(source.to_stored(consumed), [[0, 3, 1], [4, 2, 5]])


def test_to_stored_without_steps_is_identity():
    consumed = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(WeightSource("W", "Constant").to_stored(consumed), consumed)


# --- Constant attribute forms -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"value_float": 1.5}, np.array(1.5, np.float32)),
        ({"value_floats": [1.0, 2.5]}, np.array([1.0, 2.5], np.float32)),
        ({"value_int": 7}, np.array(7, np.int64)),
        ({"value_ints": [3, 4]}, np.array([3, 4], np.int64)),
    ],
    ids=["value_float", "value_floats", "value_int", "value_ints"],
)
def test_constant_attribute_forms_have_onnx_dtypes(attrs, expected):
    # ONNX: value_float(s) is float32, value_int(s) is int64
    r = _resolver("MatMul", [_node("Constant", [], "w", **attrs)], [])
    value = r.value("w")
    np.testing.assert_array_equal(value, expected)
    assert value.dtype == expected.dtype
    assert r.shape("w") == expected.shape
    assert r.source("w") == WeightSource("w", "Constant")


@pytest.mark.parametrize(
    "indices",
    [np.array([1, 4], np.int64), np.array([[0, 1], [1, 1]], np.int64)],
    ids=["linear", "coordinates"],
)
def test_sparse_constant_is_densified(indices):
    values = numpy_helper.from_array(np.array([5.0, 7.0], np.float32), "values")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(indices, "idx"), [2, 3])
    r = _resolver("Gemm", [_node("Constant", [], "w", sparse_value=sparse)], [])
    # linear index 1 is (0, 1), 4 is (1, 1)
    np.testing.assert_array_equal(r.value("w"), [[0.0, 5.0, 0.0], [0.0, 7.0, 0.0]])
    assert r.shape("w") == (2, 3)


# --- what is not a constant -------------------------------------------------------------------


def _assert_not_constant(r: ConstantResolver, name: str) -> None:
    assert not r.is_constant(name)
    assert r.source(name) is None
    assert r.value(name) is None
    assert r.shape(name) is None


def test_activation_is_not_a_constant():
    r = _resolver("MatMul", [], [_init("w", W23)])
    _assert_not_constant(r, "x")
    _assert_not_constant(r, "y")
    _assert_not_constant(r, "no_such_tensor")


@pytest.mark.parametrize(
    "node",
    [
        _node("Identity", ["x"], "w"),
        _node("Cast", ["x"], "w", to=TensorProto.FLOAT16),
        _node("Transpose", ["x"], "w", perm=[1, 0]),
        _node("Reshape", ["x", "shape"], "w"),
        _node("DequantizeLinear", ["x", "scale"], "w"),
        _node("Unsqueeze", ["x"], "w", axes=[0]),
        _node("Squeeze", ["x"], "w"),
    ],
    ids=lambda n: n.op_type,
)
def test_chain_from_an_activation_is_not_a_constant(node):
    r = _resolver(
        "MatMul",
        [node],
        [_init("shape", np.array([3, 2], np.int64)), _init("scale", np.float32(0.5))],
    )
    _assert_not_constant(r, "w")


def test_op_outside_the_followed_chains_is_not_a_constant():
    # Relu of a weight could be folded, but it is not a chain the resolver follows
    r = _resolver("MatMul", [_node("Relu", ["W"], "w")], [_init("W", W23)])
    _assert_not_constant(r, "w")
    assert r.source("W") == WeightSource("W", "initializer")


@pytest.mark.parametrize(
    ("nodes", "initializers"),
    [
        ([_node("ConstantOfShape", ["dyn"], "w")], []),
        ([_node("Reshape", ["W", "dyn"], "w")], [_init("W", W23)]),
        ([_node("DequantizeLinear", ["Wq", "dyn"], "w")], [_init("Wq", WQ)]),
        ([_node("Unsqueeze", ["W", "dyn"], "w")], [_init("W", W23)]),
    ],
    ids=["ConstantOfShape_shape", "Reshape_shape", "DequantizeLinear_scale", "Unsqueeze_axes"],
)
def test_constant_needing_a_graph_input_is_not_a_constant(nodes, initializers):
    # the stored tensor is constant, but computing ``w`` needs graph input ``dyn``
    r = _resolver("MatMul", nodes, initializers, extra_inputs=("dyn",))
    assert r.value("w") is None
    assert not r.is_constant("w")
    assert r.source("w") is None


def test_ir3_initializers_listed_as_inputs_are_constants():
    # Before IR 4 every initializer also appears in graph.input.
    nodes = [_node("Transpose", ["W"], "w", perm=[1, 0])]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
        helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 3]),
    ]
    graph = helper.make_graph(
        [*nodes, helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ir3",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [_init("W", W23)],
    )
    model = helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 8)])
    onnx.checker.check_model(model)
    r = ConstantResolver(model.graph)
    assert r.source("W") == WeightSource("W", "initializer")
    np.testing.assert_array_equal(r.value("W"), W23)
    assert r.shape("W") == (2, 3)
    assert r.source("w") == WeightSource("W", "initializer", (("transpose", (1, 0)),))
    np.testing.assert_array_equal(r.value("w"), W23.T)
    _assert_not_constant(r, "x")
