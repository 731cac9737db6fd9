"""Structured removal of LSTM, GRU and RNN hidden units, and compaction of dead ones.

Every result is checked against ONNX Runtime: the compacted model computes what the masked one
(the same units zeroed in the original shapes) does, and passes the checker in full.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune

ort = pytest.importorskip("onnxruntime")

T, F, H = 3, 4, 6  # steps, input features, hidden units
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _stacked(op: str, rng: np.random.Generator, *, attrs: dict | None = None, h0=None):
    """x [T, 1, F] -> op (bidirectional) -> Transpose, Reshape [T, 1, 2H] -> op -> Y_h [2, 1, H]
    -> Transpose, Reshape [1, 2H] -> MatMul head [2H, 3] -> y.  ``h0``: layer 1's initial_h."""
    g = GATES[op]
    inits = {
        "w1": rng.standard_normal((2, g * H, F)),
        "r1": rng.standard_normal((2, g * H, H)),
        "b1": rng.standard_normal((2, 2 * g * H)),
        "w2": rng.standard_normal((2, g * H, 2 * H)),
        "r2": rng.standard_normal((2, g * H, H)),
        "b2": rng.standard_normal((2, 2 * g * H)),
        "head": rng.standard_normal((2 * H, 3)),
    }
    first = ["x", "w1", "r1", "b1"]
    if h0 is not None:
        inits["h0"] = h0
        first += ["", "h0"]
    kw = {"hidden_size": H, "direction": "bidirectional", **(attrs or {})}
    nodes = [
        helper.make_node(op, first, ["y1"], **kw),
        helper.make_node("Transpose", ["y1"], ["t1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["t1", "s1"], ["f1"]),
        helper.make_node(op, ["f1", "w2", "r2", "b2"], ["", "yh"], **kw),
        helper.make_node("Transpose", ["yh"], ["t2"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["t2", "s2"], ["f2"]),
        helper.make_node("MatMul", ["f2", "head"], ["y"]),
    ]
    tensors = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
    tensors += [
        numpy_helper.from_array(np.array([T, 1, 2 * H], np.int64), "s1"),
        numpy_helper.from_array(np.array([1, 2 * H], np.int64), "s2"),
    ]
    graph = helper.make_graph(
        nodes,
        "stacked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        tensors,
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _hidden_sizes(model: onnx.ModelProto) -> list[int]:
    return [
        next(a.i for a in n.attribute if a.name == "hidden_size")
        for n in model.graph.node
        if n.op_type in GATES
    ]


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_structured_removes_hidden_units_of_stacked_bidirectional_layers(op: str) -> None:
    rng = np.random.default_rng(0)
    model = _stacked(op, rng, h0=rng.standard_normal((2, 1, H)))
    result = onnxprune.prune(model, structured="l1", sparsity=0.5)
    s = result.structured
    # both layers keep 3 of their 6 units, in both directions; layer 2 reads 2 * 3 features
    assert _hidden_sizes(s.model) == [H // 2, H // 2]
    tensors = {t.name: t.dims for t in s.model.graph.initializer}
    g = GATES[op]
    assert list(tensors["w1"]) == [2, g * H // 2, F]
    assert list(tensors["r1"]) == [2, g * H // 2, H // 2]
    assert list(tensors["b1"]) == [2, 2 * g * H // 2]
    assert list(tensors["h0"]) == [2, 1, H // 2]
    assert list(tensors["w2"]) == [2, g * H // 2, H]  # layer 1's 3 units in both directions
    assert list(tensors["head"]) == [H, 3]
    onnx.checker.check_model(s.model, full_check=True)
    x = rng.standard_normal((T, 1, F)).astype(np.float32)
    np.testing.assert_allclose(_run(s.model, x), _run(s.masked, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(_run(s.model, x), _run(model, x))  # something was removed


def test_compact_removes_a_dead_unit_exactly() -> None:
    # Unit 2 of layer 2: every row of W, R and the biases zero in both directions, so it
    # outputs zero at every step; compaction removes it and its head row, outputs unchanged.
    rng = np.random.default_rng(1)
    model = _stacked("LSTM", rng)
    tensors = {t.name: t for t in model.graph.initializer}
    for name, rows in (("w2", 4), ("r2", 4), ("b2", 8)):
        value = numpy_helper.to_array(tensors[name]).copy()
        value[:, np.arange(rows) * H + 2] = 0
        tensors[name].CopyFrom(numpy_helper.from_array(value, name))
    result = onnxprune.compact(model)
    assert _hidden_sizes(result.model) == [H, H - 1]
    x = rng.standard_normal((T, 1, F)).astype(np.float32)
    np.testing.assert_allclose(_run(result.model, x), _run(model, x), rtol=1e-5, atol=1e-6)
    onnx.checker.check_model(result.model, full_check=True)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"activations": ["Sigmoid", "Sigmoid", "Tanh"] * 2}, "activations that do not map 0"),
    ],
)
def test_units_stay_when_zero_cannot_hold_them(attrs: dict, reason: str) -> None:
    model = _stacked("LSTM", np.random.default_rng(2), attrs=attrs)
    s = onnxprune.prune(model, structured="l1", sparsity=0.5).structured
    assert _hidden_sizes(s.model) == [H, H]
    assert any(reason in group.reason for group in s.blocked)


def test_a_run_time_initial_state_keeps_the_units() -> None:
    model = _stacked("GRU", np.random.default_rng(3))
    node = model.graph.node[0]
    node.input.extend(["", "h0"])
    model.graph.node.insert(0, helper.make_node("Identity", ["x"], ["xi"]))
    model.graph.node.insert(1, helper.make_node("ReduceMean", ["xi"], ["h0"], axes=[0]))
    model.graph.node.insert(2, helper.make_node("Identity", ["h0"], ["unused"]))
    s = onnxprune.prune(model, structured="l1", sparsity=0.5).structured
    assert _hidden_sizes(s.model)[0] == H
    assert any("initial state 'h0' computed at run time" in g.reason for g in s.blocked)


def _zero_states(model: onnx.ModelProto, state: str) -> onnx.ModelProto:
    """``model`` (``_stacked``) with ``state`` as both layers' initial_h."""
    for node in model.graph.node:
        if node.op_type in GATES:
            del node.input[5:]
            node.input.extend(["", "", state][len(node.input) - 3 :])
    return model


def _removes_half_the_units_and_drops_the_states(model: onnx.ModelProto, dims=None) -> None:
    s = onnxprune.prune(model, structured="l1", sparsity=0.5, dims=dims).structured
    assert _hidden_sizes(s.model) == [H // 2, H // 2]
    # a missing initial state is zero: both layers lose theirs rather than slicing it
    states = [[i for i in n.input[5:] if i] for n in s.model.graph.node if n.op_type in GATES]
    assert states == [[], []]
    onnx.checker.check_model(s.model, full_check=True)
    x = np.random.default_rng(9).standard_normal((T, 1, F)).astype(np.float32)
    np.testing.assert_allclose(_run(s.model, x), _run(s.masked, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(_run(s.model, x), _run(model, x))  # something was removed


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_zero_initial_state_both_layers_share_is_dropped(op: str) -> None:
    # The dynamo export of a stacked LSTM/GRU gives every layer one initializer of zeros
    # [2, 1, H]: slicing it for one layer would change the other; dropping it changes nothing.
    model = _zero_states(_stacked(op, np.random.default_rng(4)), "zeros")
    zeros = numpy_helper.from_array(np.zeros((2, 1, H), np.float32), "zeros")
    model.graph.initializer.append(zeros)
    _removes_half_the_units_and_drops_the_states(model)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_initial_states_sliced_from_zeros_made_at_run_time_are_dropped(op: str) -> None:
    # The TorchScript export with a dynamic batch: one ConstantOfShape of zeros [4, batch, H]
    # (its shape read from x at run time), each layer's initial_h a Slice of it.
    model = _zero_states(_stacked(op, np.random.default_rng(5)), "h0")
    ints = {"one": [1], "h": [H], "two": [2], "four": [4], "zero": [0]}
    model.graph.initializer.extend(
        numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "one"], ["batch"]),
        helper.make_node("Concat", ["four", "batch", "h"], ["state_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["state_shape"], ["all_states"]),
        helper.make_node("Slice", ["all_states", "zero", "two", "zero"], ["h0"]),
        *model.graph.node,
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "batch"
    onnx.checker.check_model(model, full_check=True)
    _removes_half_the_units_and_drops_the_states(model, dims={"batch": 1})
