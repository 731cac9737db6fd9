"""A compaction that removes nothing writes the model as it came, and says so.

Compaction works on a rewritten copy (constant-node weights made initializers, stored shapes
refreshed, Reshape and Expand targets rewritten); none of that belongs in the output when no
unit goes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.cli import main
from onnxprune.structured import compact, structured_prune


def _blocked_mlp() -> onnx.ModelProto:
    """x[2,4] -> MatMul(Constant W1[4,3]) -> Relu -> h (graph output) -> MatMul W2[3,2] -> y.

    W1's three units reach the graph output h: blocked; W2's two reach y: blocked. No unit is
    dead (every weight nonzero), so compaction and structured pruning remove nothing. W1 is a
    Constant node and h carries a value_info: a rewrite would turn the node into an initializer.
    """
    w1 = numpy_helper.from_array(np.arange(1, 13, dtype=np.float32).reshape(4, 3), "W1v")
    w2 = numpy_helper.from_array(np.ones((3, 2), np.float32), "W2")
    nodes = [
        helper.make_node("Constant", [], ["W1"], value=w1, name="weights"),
        helper.make_node("MatMul", ["x", "W1"], ["m"], name="fc1"),
        helper.make_node("Relu", ["m"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "W2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
        ],
        [w2],
        value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 3])],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_compaction_removing_nothing_returns_the_input_unchanged():
    model = _blocked_mlp()
    result = compact(model, dims={"batch": 2})  # fixed dims would be declared on a cut model

    assert result.removed == {}
    assert result.model.SerializeToString() == model.SerializeToString()
    assert result.model is not model
    assert result.params_before == result.params_after == 12 + 6
    assert result.macs_before == result.macs_after


def test_structured_pruning_removing_nothing_returns_the_input_unchanged():
    model = _blocked_mlp()
    result = structured_prune(model, sparsity=0.5)

    assert result.groups_removed == 0
    assert result.model.SerializeToString() == model.SerializeToString()
    assert result.masked.SerializeToString() == model.SerializeToString()
    assert result.warnings[0].startswith("nothing was removed")


def test_cli_compact_says_nothing_was_removed(tmp_path, capsys):
    src, out = tmp_path / "m.onnx", tmp_path / "c.onnx"
    onnx.save(_blocked_mlp(), src)

    assert main(["compact", str(src), "-o", str(out)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"parameters 18 -> 18; wrote {out} unchanged (nothing removed)"
    assert onnx.load(out).graph == onnx.load(src).graph
