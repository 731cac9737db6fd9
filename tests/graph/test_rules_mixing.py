"""Rules that mix units (LRN, Softmax, reductions, pooling, Resize), channel shuffles, shape
arithmetic and subgraphs, on small models whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import analyze
from tests.helpers import single_io_model

LEVELS = ("channel", "exact")


def _one_live_channel(channels: int, live: int) -> np.ndarray:
    """1x1 conv weight [channels, 1, 1, 1] whose only nonzero output channel is ``live``."""
    w = np.zeros((channels, 1, 1, 1), np.float32)
    w[live] = 1.0
    return w


def _actives(model, level):
    return {layer.name: layer.active for layer in analyze(model, level=level).layers}


@pytest.mark.parametrize(
    "op", ["LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization"]
)
@pytest.mark.parametrize("level", LEVELS)
def test_a_norm_over_the_channels_spreads_any_live_one_to_all(level, op):
    # w1 [4, 3] leaves neuron 0 without input weights; the norm divides every neuron by a
    # statistic over all three, so all of them carry signal and all 6 weights of w2 are active.
    w1 = np.ones((4, 3), np.float32)
    w1[:, 0] = 0
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node(op, ["h", "scale"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "w2"], ["y"]),
    ]
    inits = {"w1": w1, "scale": np.ones(3), "w2": np.ones((3, 2))}
    model = single_io_model(nodes, [1, 5, 4], None, inits, opset=23)
    assert _actives(model, level) == {"w1": 8, "w2": 6}
    assert analyze(model).fallbacks == ()


@pytest.mark.parametrize("level", LEVELS)
def test_lrn_spreads_a_channel_to_its_neighbours_only(level):
    # c1 makes 5 channels, only channel 0 carries signal. LRN(size=3) reads channels c-1..c+1,
    # so channels 0 and 1 carry signal after it. c2 (1x1, 5 -> 1, dense): 2 of 5 weights active.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("LRN", ["a"], ["b"], size=3),
        helper.make_node("Conv", ["b", "w2"], ["y"]),
    ]
    model = single_io_model(
        nodes, [1, 1, 2, 2], None, {"w1": _one_live_channel(5, 0), "w2": np.ones((1, 5, 1, 1))}
    )
    assert _actives(model, level) == {"w1": 1, "w2": 2}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("op", "attrs", "expected_w2"),
    [
        ("Softmax", {"axis": 1}, 4),  # mixes channels: every channel carries signal
        ("Softmax", {"axis": 2}, 1),  # mixes rows within a channel: channels stay apart
        ("ReduceMean", {"axes": [2, 3]}, 1),  # spatial mean keeps channels
        ("GlobalAveragePool", {}, 1),
        ("MaxPool", {"kernel_shape": [2, 2]}, 1),
        ("InstanceNormalization", {}, 1),
    ],
)
def test_mixing_along_an_axis(level, op, attrs, expected_w2):
    # w1: 4 channels, only channel 2 carries signal; w2: 1x1 conv 4 -> 1, all nonzero.
    inputs = ["a"]
    inits = {"w1": _one_live_channel(4, 2), "w2": np.ones((1, 4, 1, 1))}
    if op == "InstanceNormalization":
        inputs += ["scale", "bias"]
        inits |= {"scale": np.ones(4), "bias": np.zeros(4)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node(op, inputs, ["b"], **attrs),
        helper.make_node("Conv", ["b", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, [1, 1, 2, 2], None, inits)
    assert _actives(model, level) == {"w1": 1, "w2": expected_w2}


@pytest.mark.parametrize("level", LEVELS)
def test_reduce_over_channels_then_broadcast_mixes_everything(level):
    # b = a - mean_c(a): every channel of b depends on every channel of a.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("ReduceMean", ["a", "axes"], ["m"], keepdims=1),
        helper.make_node("Sub", ["a", "m"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["y"]),
    ]
    inits = {"w1": _one_live_channel(4, 2), "w2": np.ones((1, 4, 1, 1))}
    graph = single_io_model(nodes, [1, 1, 2, 2], None, inits, opset=18)
    graph.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    assert _actives(graph, level) == {"w1": 1, "w2": 4}


@pytest.mark.parametrize("level", LEVELS)
def test_channel_shuffle_is_followed_exactly(level):
    # ShuffleNet's shuffle with 2 groups of 2: [N,4,H,W] -> [N,2,2,H,W] -> swap -> [N,4,H,W]
    # maps channel (g, i) to (i, g): 0->0, 1->2, 2->1, 3->3. Only channel 1 carries signal, so
    # after the shuffle only channel 2 does, and of w2 (4 -> 4, identity pattern) only the
    # weight on channel 2 is active.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Reshape", ["a", "s5"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s4"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["y"]),
    ]
    inits = {"w1": _one_live_channel(4, 1), "w2": np.eye(4).reshape(4, 4, 1, 1)}
    model = single_io_model(nodes, [1, 1, 3, 3], None, inits)
    for name, value in (("s5", [1, 2, 2, 3, 3]), ("s4", [1, 4, 3, 3])):
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    report = analyze(model, level=level)
    assert {layer.name: layer.active for layer in report.layers} == {"w1": 1, "w2": 1}
    assert not report.fallbacks


def test_shape_arithmetic_is_not_a_signal_path_nor_a_fallback():
    # Reshape's target comes from Shape -> Gather -> Concat, as torch exports flatten. The
    # shape subgraph carries no activation signal and must not be listed as a fallback.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Shape", ["a"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1d"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["a", "target"], ["f"]),
        helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1),
    ]
    w1 = np.zeros((2, 1, 2, 2), np.float32)
    w1[1] = 1.0  # channel 0 is dead: its 4 flattened features carry nothing
    inits = {"w1": w1, "w2": np.ones((3, 8))}  # a is [N, 2, 2, 2]: 8 features
    model = single_io_model(nodes, ["N", 1, 3, 3], None, inits)
    for name, value in (("zero", np.array(0, np.int64)), ("zero1d", np.array([0], np.int64))):
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "minus1"))
    for level in LEVELS:
        report = analyze(model, level=level)
        assert not report.fallbacks
        assert {layer.name: layer.active for layer in report.layers} == {"w1": 4, "w2": 12}


def test_model_without_prunable_weights_reports_zero_layers():
    model = single_io_model([helper.make_node("Relu", ["x"], ["y"])], [1, 4], None, {})
    report = analyze(model)
    assert report.layers == ()
    assert report.total_params == 0
    assert report.to_dict()["layers"] == []


def test_subgraph_reading_an_outer_activation_falls_back_conservatively():
    # If's branches read `a` from the outer scope: `y` depends on `a` although `a` is not an
    # explicit input of If. The fallback must connect it, so w1's weights stay active.
    then_graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["t_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["e_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("If", ["cond"], ["b"], then_branch=then_graph, else_branch=else_graph),
        helper.make_node("MatMul", ["b", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, [1, 2], [1, 1], {"w1": np.ones((2, 3)), "w2": np.ones((3, 1))})
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    report = analyze(model)
    assert report.fallback_ops == ("If",)
    assert {layer.name: layer.active for layer in report.layers} == {"w1": 6, "w2": 3}


@pytest.mark.parametrize("level", LEVELS)
def test_dropout_mask_output_needs_no_shape(level):
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("Dropout", ["a"], ["b", "mask"]),
        helper.make_node("MatMul", ["b", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, [1, 2], [1, 1], {"w1": np.ones((2, 3)), "w2": np.ones((3, 1))})
    assert _actives(model, level) == {"w1": 6, "w2": 3}


def test_exact_level_needs_no_shape_where_only_dense_mixing_reads_it():
    # y2 = Cast(custom::Foo(a)) has no inferable shape, but only dense and element-wise ops
    # touch it: the exact level summarizes it by one value instead of refusing the model.
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["y"]),
        helper.make_node("Foo", ["a"], ["f"], domain="custom"),
        helper.make_node("Cast", ["f"], ["y2"], to=TensorProto.INT64),
    ]
    w1 = np.ones((2, 3))
    w1[:, 2] = 0  # hidden unit 2 is dead: w2's row 2 is inactive on the y path
    model = single_io_model(nodes, [1, 2], [1, 1], {"w1": w1, "w2": np.ones((3, 1))})
    model.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.INT64, None))
    model.opset_import.append(helper.make_opsetid("custom", 1))
    exact = analyze(model, level="exact")
    channel = analyze(model, level="channel")
    assert {layer.name: layer.active for layer in exact.layers} == {"w1": 4, "w2": 2}
    assert [layer.active for layer in channel.layers] == [4, 2]
    assert exact.fallback_ops == ("Foo",)


@pytest.mark.parametrize("level", LEVELS)
def test_linear_on_a_sequence_relayouts_to_the_last_axis(level):
    # x [1, 3, 4] (batch, tokens, features) -> MatMul w1 [4, 2] -> MatMul w2 [2, 1]. The graph
    # input's default units are axis 1 (tokens); the first MatMul contracts the last axis.
    w1 = np.ones((4, 2))
    w1[:, 1] = 0  # feature 1 of the hidden layer is dead: w2's row 1 is inactive
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, [1, 3, 4], [1, 3, 1], {"w1": w1, "w2": np.ones((2, 1))})
    assert _actives(model, level) == {"w1": 4, "w2": 1}
