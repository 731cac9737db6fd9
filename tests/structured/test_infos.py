"""Stored shapes (value_info) after a cut agree with the cut model (``structured.infos``)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.structured import compact, structured_prune
from onnxprune.structured.infos import inferred_infos
from tests.structured._common import assert_close, run


def _info(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _dims(model: onnx.ModelProto, name: str) -> list | None:
    for vi in (*model.graph.value_info, *model.graph.output):
        if vi.name == name:
            return [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]
    return None


def _mlp_with_infos() -> onnx.ModelProto:
    """x[1,3] -> MatMul w1[3,4] -> h -> Relu -> r -> Gemm w2[2,4] (transB) + b2 -> y[1,2].

    Hidden unit 2 has an all-zero column in w1 and unit 3 an all-zero column in w2: compaction
    removes both (4 -> 2 hidden units), so w1 becomes [3,2], w2 [2,2], h and r [1,2]. Every
    tensor has a value_info, as PyTorch's dynamo exporter writes them.
    """
    w1 = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    w1[:, 2] = 0
    w2 = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    w2[:, 3] = 0
    b2 = np.array([0.5, -0.5], np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"))]
    infos = [_info("w1", [3, 4]), _info("w2", [2, 4]), _info("b2", [2])]
    infos += [_info("h", [1, 4]), _info("r", [1, 4])]
    graph = helper.make_graph(
        nodes, "g", [_info("x", [1, 3])], [_info("y", [1, 2])], inits, value_info=infos
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_compact_gives_weights_and_activations_their_new_shapes():
    model = _mlp_with_infos()
    result = compact(model)
    assert result.removed == {"w1": 2}
    out = result.model
    assert (_dims(out, "w1"), _dims(out, "w2"), _dims(out, "b2")) == ([3, 2], [2, 2], [2])
    assert (_dims(out, "h"), _dims(out, "r")) == ([1, 2], [1, 2])
    onnx.checker.check_model(out, full_check=True)
    x = {"x": np.array([[1.0, -2.0, 3.0]], np.float32)}
    assert_close(run(model, x), run(out, x))


def test_inferred_infos_fixes_stale_sizes_drops_wrong_ranks_and_keeps_outputs():
    # x[n,3] -> MatMul w[3,2] -> h[n,2] -> Relu -> y[n,2] -> Custom -> z. Stored: h [n,5] and
    # the output y [n,7] (stale sizes), w with rank 3, and z [4,4], which inference cannot know.
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["y"]),
        helper.make_node("Custom", ["y"], ["z"], domain="my.domain"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [_info("x", ["n", 3])],
        [_info("y", ["n", 7]), _info("z", [4, 4])],
        [w],
        value_info=[_info("h", ["n", 5]), _info("w", [3, 2, 1])],
    )
    model = helper.make_model(
        graph,
        ir_version=10,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)],
    )
    inferred_infos(model)
    assert _dims(model, "h") == ["n", 2]  # the symbolic size stays as stored
    assert _dims(model, "w") is None  # rank 3 stored, rank 2 stored as initializer: dropped
    assert _dims(model, "y") == ["n", 2]
    assert _dims(model, "z") == [4, 4]  # nothing inferred: left as stored
    assert [o.name for o in model.graph.output] == ["y", "z"]


def test_an_output_declared_with_the_wrong_rank_takes_the_inferred_shape():
    # x[1,3] -> MatMul w1[3,4] (column 2 zero) -> Relu -> MatMul w2[4,6] -> h[1,6] ->
    # Reshape to [batch, 2, -1], batch read at run time from Shape(x) -> y[1,2,3], declared
    # [1, "seqlen"] as ddddocr's OCR model declares its output (ONNX Runtime runs it). There
    # the rank hid from onnx's inference until the declared input sizes folded the target;
    # either way the compacted model must declare what it computes, or the checker refuses it.
    w1 = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    w1[:, 2] = 0
    w2 = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
    batch = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    rest = numpy_helper.from_array(np.array([2, -1], np.int64), "rest")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["h"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["h", "target"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), batch, rest]
    graph = helper.make_graph(nodes, "g", [_info("x", [1, 3])], [_info("y", [1, "seqlen"])], inits)
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    result = compact(model)
    assert result.removed == {"w1": 1}
    onnx.checker.check_model(result.model, full_check=True)
    assert _dims(result.model, "y") == [1, 2, 3]
    x = {"x": np.array([[1.0, -2.0, 3.0]], np.float32)}
    assert_close(run(model, x), run(result.model, x))
    cut = structured_prune(model, sparsity=0.25, criterion="l1")  # its masked copy too
    for out in (cut.masked, cut.model):
        onnx.checker.check_model(out, full_check=True)
        assert _dims(out, "y") == [1, 2, 3]
    assert_close(run(cut.masked, x), run(cut.model, x))
