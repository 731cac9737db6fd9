"""An Expand whose shape the exporter computes gets a constant shape, and the computation goes.

The TorchScript exporter writes the target of ``expand`` as ``Where(Equal(C, Mul(ConstantOfShape,
-1)), ConstantOfShape, C)``. When units leave the expanded tensor, compaction gives the Expand a
constant shape; the chain that computed the old one is read by nothing and is removed with the
constants only it read.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked


def _expand_model() -> onnx.ModelProto:
    """x[1,4] -> W1[4,6] -> Relu -> h[1,6] -> Expand to [2,6] (shape computed) -> W2[6,3] -> y.

    The shape: ones = ConstantOfShape([2]) = [1, 1]; neg = ones * -1 = [-1, -1];
    eq = (C == neg) = [False, False]; shape = Where(eq, ones, C) = C = [2, 6]. At 50% W1 keeps 3
    of its 6 units; the Expand's shape becomes [2, 3].
    """
    rng = np.random.default_rng(0)
    tensors = {
        "W1": rng.normal(size=(4, 6)).astype(np.float32),
        "W2": rng.normal(size=(6, 3)).astype(np.float32),
        "C": np.array([2, 6], np.int64),
        "minus1": np.array(-1, np.int64),
    }
    length = numpy_helper.from_array(np.array([2], np.int64), "length")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["m"], name="fc1"),
        helper.make_node("Relu", ["m"], ["h"], name="relu"),
        helper.make_node("Constant", [], ["len"], value=length, name="len"),
        helper.make_node("ConstantOfShape", ["len"], ["ones"], value=one, name="ones"),
        helper.make_node("Mul", ["ones", "minus1"], ["neg"], name="neg"),
        helper.make_node("Equal", ["C", "neg"], ["eq"], name="eq"),
        helper.make_node("Where", ["eq", "ones", "C"], ["shape"], name="where"),
        helper.make_node("Expand", ["h", "shape"], ["e"], name="expand"),
        helper.make_node("MatMul", ["e", "W2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_the_chain_computing_a_rewritten_expand_shape_is_removed():
    result = structured_prune(_expand_model(), sparsity=0.5)

    assert result.units == {"W1": (3, 6)}
    nodes = result.model.graph.node
    assert [n.op_type for n in nodes] == ["MatMul", "Relu", "Expand", "MatMul"]
    values = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    expand = next(n for n in nodes if n.op_type == "Expand")
    assert values[expand.input[1]].tolist() == [2, 3]
    assert sorted(values) == sorted(["W1", "W2", expand.input[1]])  # C and -1 went too
    onnx.shape_inference.infer_shapes(result.model, strict_mode=True)
    feed = {"x": np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)}
    assert_pruned_like_masked(result, feed)  # full checker, and the masked model's outputs
