"""A model that declares the size of every input dimension has its shape arithmetic folded.

ONNX Runtime refuses a feed whose size differs from a declared one, so what ``Shape`` gives in
such a model is the same on every run: compaction stores the values computed from it as
constants (``graph.shapes.static_inputs``), as it does for sizes given with ``--input-shape``,
and a target computed from ``Shape`` then follows the kept units. With a symbolic dimension the
same graph keeps its units (``test_blocked.py``).

Each model: a Conv ``c1`` (8 filters) -> h, something computed from ``Shape(h)``, Relu, a Conv
``c2`` (3 filters) -> y; at sparsity 0.5, 4 of c1's 8 filters go where the units can follow.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune.graph.shapes import static_inputs
from onnxprune.structured import compact, structured_prune
from tests.structured._common import assert_pruned_like_masked, run
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)


def _model(batch: int | str, middle: list[onnx.NodeProto]) -> onnx.ModelProto:
    """c1 -> h -> ``middle`` (h to r) -> c2 -> y, with x [batch, 2, 4, 4]."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="c1"),
        helper.make_node("Shape", ["h"], ["shape"], name="shp"),
        *middle,
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    inits = {
        "w1": RNG.normal(size=(8, 2, 1, 1)).astype(np.float32),
        "w2": RNG.normal(size=(3, 8, 1, 1)).astype(np.float32),
    }
    return graph_model(nodes, {"x": [batch, 2, 4, 4]}, {"y": [batch, 3, 4, 4]}, inits)


RESHAPE_TO_ITS_SHAPE = [  # Reshape(Relu(h), Shape(h)): the target holds the channel count
    helper.make_node("Relu", ["h"], ["a"], name="relu"),
    helper.make_node("Reshape", ["a", "shape"], ["r"], name="back"),
]
ONES_OF_ITS_SHAPE = [  # h * ConstantOfShape(Shape(h), 1): a constant over the channels
    helper.make_node(
        "ConstantOfShape",
        ["shape"],
        ["ones"],
        name="ones",
        value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
    ),
    helper.make_node("Mul", ["h", "ones"], ["m"], name="mul"),
    helper.make_node("Relu", ["m"], ["r"], name="relu"),
]


def _feed() -> dict[str, np.ndarray]:
    return {"x": RNG.normal(size=(1, 2, 4, 4)).astype(np.float32)}


def test_a_target_computed_from_shape_follows_the_kept_units_when_sizes_are_declared():
    result = structured_prune(_model(1, RESHAPE_TO_ITS_SHAPE), sparsity=0.5)

    assert result.units == {"w1": (4, 8)}
    assert not any(n.op_type == "Shape" for n in result.model.graph.node)
    assert_pruned_like_masked(result, _feed())
    x = result.model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in x] == [1, 2, 4, 4]  # still declared: the folding relies on it


def test_the_same_target_blocks_with_a_symbolic_batch():
    result = structured_prune(_model("N", RESHAPE_TO_ITS_SHAPE), sparsity=0.5)

    assert result.units == {}
    assert "Shape node 'shp'" in result.blocked[0].reason


def test_a_constant_made_from_the_shape_still_keeps_the_units():
    # Folded, ConstantOfShape's input is a stored [1, 8, 4, 4]: its output is a constant the
    # Mul reads along the channels, which compaction does not slice, so c1 keeps its filters.
    result = structured_prune(_model(1, ONES_OF_ITS_SHAPE), sparsity=0.5)

    assert result.units == {}
    assert result.blocked[0].layers == ("w1",)
    assert_pruned_like_masked(result, _feed())


@pytest.mark.parametrize(
    ("dims", "static"),
    [([1, 2], True), ([], True), (["N", 2], False), ([1, None], False), (None, False)],
)
def test_static_inputs_needs_every_dimension_sized(dims, static):
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    weight = helper.make_tensor_value_info("w", TensorProto.FLOAT, ["k"])  # an initializer
    graph = helper.make_graph([], "g", [value, weight], [], [helper.make_tensor("w", 1, [1], [0])])
    assert static_inputs(graph) is static


def test_a_table_computed_from_constants_stays_computed():
    # DeBERTa builds its relative positions [B*H, T, T] from constants (Range, Expand): stored,
    # they grew the compacted model (4 tables of 512 numbers where 1,400 weights went). Here
    # a [16, 16] grid of positions indexes a table beside an MLP whose 2 dead hidden units go
    # (-14 weights); the grid (256 numbers) must not be stored.
    w1 = RNG.normal(size=(4, 6))
    w1[:, 4:] = 0
    inits = {
        "w1": w1, "w2": RNG.normal(size=(6, 3)), "table": RNG.normal(size=(16, 3)),
        "start": np.array(0, np.int64), "limit": np.array(16, np.int64),
        "delta": np.array(1, np.int64), "ax0": np.array([0], np.int64),
        "square": np.array([16, 16], np.int64), "axes01": np.array([0, 1], np.int64),
    }  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["h"]),
        helper.make_node("Range", ["start", "limit", "delta"], ["pos"]),
        helper.make_node("Unsqueeze", ["pos", "ax0"], ["row"]),
        helper.make_node("Expand", ["row", "square"], ["grid"]),
        helper.make_node("Gather", ["table", "grid"], ["emb"]),
        helper.make_node("ReduceMean", ["emb", "axes01"], ["bias"], keepdims=0),
        helper.make_node("Add", ["h", "bias"], ["y"]),
    ]
    model = graph_model(nodes, {"x": [1, 4]}, {"y": [1, 3]}, inits, opset=18)
    result = compact(model)

    stored = {t.name: list(t.dims) for t in result.model.graph.initializer}
    assert stored["w1"] == [4, 4]
    assert "grid" not in stored
    assert result.params_after < result.params_before
    x = {"x": RNG.normal(size=(1, 4)).astype(np.float32)}
    np.testing.assert_allclose(run(result.model, x)[0], run(model, x)[0], rtol=1e-5, atol=1e-6)
