"""A model whose layers sit inside ``If`` branches, a ``Loop`` body and a ``Scan`` body.

Built with ``onnx.helper``, with a float64 numpy reference of what it computes, so the tests
can check pruned models against masked weights worked out independently of onnxprune.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
RNG = np.random.default_rng(15)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


WEIGHTS = {
    "w_top": _w(4, 6),  # main-graph initializer
    "w_out": _w(3, 3),  # main-graph initializer that only the two branches read
    "If_2/then_branch/t1": _w(6, 5),  # Constant in the then branch, a dead unit (column 4)
    "If_2/then_branch/t2": _w(5, 3),  # Constant, Gemm's B
    "If_2/else_branch/e1": _w(3, 6, 1, 1),  # Constant, a 1x1 Conv
    "Loop_3/body/lw": _w(3, 3),  # initializer of the Loop body
    "Scan_4/body/sw": _w(3, 2),  # Constant in the Scan body
}
WEIGHTS["If_2/then_branch/t1"][:, 4] = 0  # t1's unit 4 is never reached: t2's row 4 is dead
BIAS = _w(3)


def _then() -> onnx.GraphProto:
    nodes = [
        _constant("t1", WEIGHTS["If_2/then_branch/t1"]),
        _constant("t2", WEIGHTS["If_2/then_branch/t2"]),
        _constant("tb", BIAS),
        helper.make_node("MatMul", ["r", "t1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Gemm", ["h2", "t2", "tb"], ["g"]),
        helper.make_node("MatMul", ["g", "w_out"], ["y_then"]),
    ]
    out = [helper.make_tensor_value_info("y_then", F, ["N", 3])]
    return helper.make_graph(nodes, "then", [], out)


def _else() -> onnx.GraphProto:
    nodes = [
        _constant("e1", WEIGHTS["If_2/else_branch/e1"]),
        _constant("shape4", np.array([-1, 6, 1, 1], np.int64)),
        helper.make_node("Reshape", ["r", "shape4"], ["r4"]),
        helper.make_node("Conv", ["r4", "e1"], ["c4"]),
        helper.make_node("Flatten", ["c4"], ["f"]),
        helper.make_node("MatMul", ["f", "w_out"], ["y_else"]),
    ]
    out = [helper.make_tensor_value_info("y_else", F, ["N", 3])]
    return helper.make_graph(nodes, "else", [], out)


def _loop_body() -> onnx.GraphProto:
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("MatMul", ["v_in", "lw"], ["lm"]),
        helper.make_node("Tanh", ["lm"], ["v_out"]),
    ]
    inputs = [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_in", F, ["N", 3]),
    ]
    outputs = [
        helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_out", F, ["N", 3]),
    ]
    init = [numpy_helper.from_array(WEIGHTS["Loop_3/body/lw"], "lw")]
    return helper.make_graph(nodes, "body", inputs, outputs, init)


def _scan_body() -> onnx.GraphProto:
    nodes = [
        _constant("sw", WEIGHTS["Scan_4/body/sw"]),
        helper.make_node("MatMul", ["row", "sw"], ["sm"]),
        helper.make_node("Add", ["s_in", "sm"], ["s_out"]),
        helper.make_node("Identity", ["sm"], ["s_each"]),
    ]
    inputs = [
        helper.make_tensor_value_info("s_in", F, [2]),
        helper.make_tensor_value_info("row", F, [3]),
    ]
    outputs = [
        helper.make_tensor_value_info("s_out", F, [2]),
        helper.make_tensor_value_info("s_each", F, [2]),
    ]
    return helper.make_graph(nodes, "body", inputs, outputs)


def control_flow_model() -> onnx.ModelProto:
    """``x [N,4], c -> If(c) -> Loop(2 steps) -> Scan over rows``, every layer in a body but one.

    Main graph: ``r = relu(x @ w_top)``; ``If_2``: then ``relu(r @ t1) @ t2 + tb``, else a 1x1
    Conv of ``r`` by ``e1``, both times ``@ w_out`` (a main-graph initializer); ``Loop_3``
    twice ``v = tanh(v @ lw)``; ``Scan_4`` over the rows ``x_t`` of ``v``: ``s += x_t @ sw``
    (outputs ``s`` and every ``x_t @ sw``).
    """
    nodes = [
        helper.make_node("MatMul", ["x", "w_top"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("If", ["c"], ["y"], then_branch=_then(), else_branch=_else()),
        helper.make_node("Loop", ["trips", "keep_going", "y"], ["v"], body=_loop_body()),
        helper.make_node("Scan", ["s0", "v"], ["s", "each"], body=_scan_body(), num_scan_inputs=1),
    ]
    init = [
        numpy_helper.from_array(WEIGHTS["w_top"], "w_top"),
        numpy_helper.from_array(WEIGHTS["w_out"], "w_out"),
        numpy_helper.from_array(np.array(2, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "keep_going"),
        numpy_helper.from_array(np.zeros(2, np.float32), "s0"),
    ]
    graph = helper.make_graph(
        nodes,
        "control_flow",
        [
            helper.make_tensor_value_info("x", F, ["N", 4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("s", F, [2]),
            helper.make_tensor_value_info("each", F, ["N", 2]),
        ],
        init,
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def reference(weights: dict[str, np.ndarray], x: np.ndarray, c: bool) -> list[np.ndarray]:
    """What the model computes with ``weights`` (keyed like its masks), in float64."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    r = np.maximum(x @ w["w_top"], 0)
    if c:
        h = np.maximum(r @ w["If_2/then_branch/t1"], 0)
        v = h @ w["If_2/then_branch/t2"] + BIAS
    else:
        v = r @ w["If_2/else_branch/e1"][:, :, 0, 0].T
    v = v @ w["w_out"]
    for _ in range(2):
        v = np.tanh(v @ w["Loop_3/body/lw"])
    each = v @ w["Scan_4/body/sw"]
    return [each.sum(axis=0), each]
