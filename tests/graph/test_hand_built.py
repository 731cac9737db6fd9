"""Small hand-built graphs whose active weights and dead units are worked out by hand.

Weights are written in their stored layout; each comment traces which units reach the input and
the output, the way scipy's csgraph tests spell out a 3x3 adjacency matrix.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import analyze
from onnxprune.errors import ShapeError

LEVELS = ("channel", "exact")


def _model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int]],
    outputs: dict[str, list[int]],
    inits: dict[str, np.ndarray],
    *,
    int_inits: dict[str, np.ndarray] | None = None,
    domains: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """A model whose ``inits`` are float32 and ``int_inits`` int64 initializers."""

    def info(name: str, shape: list[int]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    tensors = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
    tensors += [
        numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in (int_inits or {}).items()
    ]
    graph = helper.make_graph(
        nodes,
        "hand_built",
        [info(k, v) for k, v in inputs.items()],
        [info(k, v) for k, v in outputs.items()],
        tensors,
    )
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, ir_version=10, opset_imports=opsets)


def _rows(report) -> dict[str, tuple[int, int, int, int]]:
    """name -> (zeros, active, dead_inputs, dead_outputs)."""
    return {r.name: (r.zeros, r.active, r.dead_inputs, r.dead_outputs) for r in report.layers}


# (a) ------------------------------------------------------------------------------------------


def _mlp_4_3_2() -> onnx.ModelProto:
    w1 = np.ones((4, 3))  # MatMul [K=4, N=3]
    # Gemm transB=1 stores [N=2, K=3]; column 1 = hidden unit h1's outgoing weights, all zero.
    w2 = np.array([[1, 0, 1], [1, 0, 1]])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1),
    ]
    return _model(nodes, {"x": [1, 4]}, {"y": [1, 2]}, {"w1": w1, "w2": w2})


@pytest.mark.parametrize("level", LEVELS)
def test_mlp_hidden_unit_without_outgoing_weights_kills_its_incoming_row(level: str) -> None:
    # h1 reaches no output, so its 4 incoming weights w1[:, 1] are inactive: w1 active 12 - 4 = 8,
    # dead outputs {h1}, no dead input (x0..x3 still feed h0 and h2).
    # w2: 2 zeros, 4 active, dead input {h1}, no dead output.
    # Totals: 18 params, 2 zeros -> direct 2/18; 12 active -> effective 6/18.
    report = analyze(_mlp_4_3_2(), level=level)
    assert _rows(report) == {"w1": (0, 8, 0, 1), "w2": (2, 4, 1, 0)}
    assert report.direct_sparsity == pytest.approx(2 / 18)
    assert report.effective_sparsity == pytest.approx(6 / 18)


# (b) ------------------------------------------------------------------------------------------


def _residual(skip: bool) -> onnx.ModelProto:
    wa = np.ones((2, 2))
    wb = np.array([[1, 1], [0, 0]])  # [K, N]: a1 has no outgoing weight in wb
    nodes = [
        helper.make_node("MatMul", ["x", "wa"], ["a"]),
        helper.make_node("MatMul", ["a", "wb"], ["b" if skip else "y"]),
    ]
    if skip:
        nodes.append(helper.make_node("Add", ["a", "b"], ["y"]))
    return _model(nodes, {"x": [1, 2]}, {"y": [1, 2]}, {"wa": wa, "wb": wb})


@pytest.mark.parametrize("level", LEVELS)
def test_residual_add_keeps_a_path_alive(level: str) -> None:
    # Without the skip, a1 reaches no output (wb row 1 is zero): wa[:, 1] is inactive, wa active 2.
    # With y = a + a @ wb, a1 reaches y1 directly: all 4 of wa are active; wb is unchanged.
    cut = _rows(analyze(_residual(skip=False), level=level))
    kept = _rows(analyze(_residual(skip=True), level=level))
    assert cut == {"wa": (0, 2, 0, 1), "wb": (2, 2, 1, 0)}
    assert kept == {"wa": (0, 4, 0, 0), "wb": (2, 2, 1, 0)}


# (c) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_concat_of_branches_feeds_a_conv(level: str) -> None:
    # x[1,1,3,3] -> A (1x1, 1->1, w=1)   -> a0
    #           -> B (1x1, 1->2, w=[1,0]) -> b0 reached, b1 not (its only weight is 0)
    # c = Concat([a, b], axis=1): c0 = a0, c1 = b0, c2 = b1
    # C (1x1, 3->1, w=[0,1,1]) -> y: c0's weight is 0, c2 is never reached, only c1 is active.
    # So a0 reaches no output: A's single weight is inactive (dead in and out).
    # B: b0's weight active, b1's is zero (dead output b1). C: active 1, dead inputs {c0, c2}.
    # A swapped concat order would give A 1, B 0 active instead.
    nodes = [
        helper.make_node("Conv", ["x", "wA"], ["a"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["x", "wB"], ["b"], kernel_shape=[1, 1]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Conv", ["c", "wC"], ["y"], kernel_shape=[1, 1]),
    ]
    inits = {
        "wA": np.ones((1, 1, 1, 1)),
        "wB": np.array([1, 0]).reshape(2, 1, 1, 1),
        "wC": np.array([0, 1, 1]).reshape(1, 3, 1, 1),
    }
    model = _model(nodes, {"x": [1, 1, 3, 3]}, {"y": [1, 1, 3, 3]}, inits)
    rows = _rows(analyze(model, level=level))
    assert rows == {"wA": (0, 0, 1, 1), "wB": (1, 1, 0, 1), "wC": (1, 1, 2, 0)}


# (d) ------------------------------------------------------------------------------------------


def _flatten_model(conv_w: list[int], gemm_w: np.ndarray) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["h"], kernel_shape=[1, 1]),
        helper.make_node("Flatten", ["h"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg"], ["y"]),
    ]
    inits = {"wc": np.array(conv_w).reshape(2, 1, 1, 1), "wg": gemm_w}
    return _model(nodes, {"x": [1, 1, 2, 2]}, {"y": [1, 3]}, inits)


@pytest.mark.parametrize("level", LEVELS)
def test_flatten_dead_channel_kills_its_four_features(level: str) -> None:
    # conv 1x1 1->2 with w = [1, 0]: h[1,2,2,2] channel 1 is never reached.
    # Flatten: features 0-3 are channel 0's positions, 4-7 channel 1's.
    # Gemm [K=8, N=3], all ones: rows 4-7 (12 weights) are inactive, 12 active, 4 dead inputs.
    forward_cut = _rows(analyze(_flatten_model([1, 0], np.ones((8, 3))), level=level))
    assert forward_cut == {"wc": (1, 1, 0, 1), "wg": (0, 12, 4, 0)}
    # Backward: Gemm rows 0-3 zero, so channel 0 reaches no output and its conv weight is
    # inactive though nonzero; channel 1 (rows 4-7) keeps its weight active.
    gemm_w = np.ones((8, 3))
    gemm_w[:4] = 0
    backward_cut = _rows(analyze(_flatten_model([1, 1], gemm_w), level=level))
    assert backward_cut == {"wc": (0, 1, 0, 1), "wg": (12, 12, 4, 0)}


# (e) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_depthwise_and_grouped_conv_with_a_dead_channel(level: str) -> None:
    # x[1,4,3,3] -> P (1x1, 4->4, w = diag(1, 1, 0, 1)): p2 is never reached, x2 has no weight.
    # -> D depthwise 3x3 pads 1 group 4, all ones: on a 3x3 map with pads 1 every tap meets a
    #    real pixel, so each live channel keeps 9 active taps; channel 2's 9 are inactive:
    #    36 params, 27 active, dead in {p2}, dead out {d2}.
    # -> G (1x1, 4->2, group 2, all ones): y0 reads d0, d1; y1 reads d2, d3.
    #    Weight (y1 <- d2) is inactive: 3 of 4 active, dead input {d2}, no dead output.
    # P: 3 nonzero, all on live paths; 13 zeros.
    nodes = [
        helper.make_node("Conv", ["x", "wP"], ["p"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["p", "wD"], ["d"], kernel_shape=[3, 3], pads=[1] * 4, group=4),
        helper.make_node("Conv", ["d", "wG"], ["y"], kernel_shape=[1, 1], group=2),
    ]
    inits = {
        "wP": np.diag([1, 1, 0, 1]).reshape(4, 4, 1, 1),
        "wD": np.ones((4, 1, 3, 3)),
        "wG": np.ones((2, 2, 1, 1)),
    }
    model = _model(nodes, {"x": [1, 4, 3, 3]}, {"y": [1, 2, 3, 3]}, inits)
    rows = _rows(analyze(model, level=level))
    assert rows == {"wP": (13, 3, 1, 1), "wD": (0, 27, 1, 1), "wG": (0, 3, 1, 0)}


# (f) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_taps_that_only_see_padding_are_inactive(level: str) -> None:
    # 3x3 kernel, pads 1, on a 1x1 map: the one output position reads the one input pixel only
    # through the centre tap; the 8 others only ever see padding. Active 1 of 9 nonzero.
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)]
    model = _model(nodes, {"x": [1, 1, 1, 1]}, {"y": [1, 1, 1, 1]}, {"w": np.ones((1, 1, 3, 3))})
    report = analyze(model, level=level)
    assert _rows(report) == {"w": (0, 1, 0, 0)}
    assert report.direct_sparsity == 0.0
    assert report.effective_sparsity == pytest.approx(8 / 9)


# (g) ------------------------------------------------------------------------------------------


def _middle_op(op: str) -> onnx.ModelProto:
    # x[1,4] -> w1 [4,3] ones -> h -> op -> t[1,3] -> w2 [3,2] (row 1 zero) -> y[1,2]
    w2 = np.array([[1, 1], [0, 0], [1, 1]])
    inits = {"w1": np.ones((4, 3)), "w2": w2}
    ints = {}
    if op == "TopK":
        middle = helper.make_node("TopK", ["h", "k"], ["t", "idx"], axis=-1)
        ints["k"] = np.array([3])
    elif op == "Foo":
        middle = helper.make_node("Foo", ["h"], ["t"], domain="custom")
    else:
        middle = helper.make_node(op, ["h"], ["t"])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        middle,
        helper.make_node("MatMul", ["t", "w2"], ["y"]),
    ]
    domains = ("custom",) if op == "Foo" else ()
    return _model(nodes, {"x": [1, 4]}, {"y": [1, 2]}, inits, int_inits=ints, domains=domains)


@pytest.mark.parametrize("level", LEVELS)
def test_op_without_rule_falls_back_to_dense_and_never_over_reports(level: str) -> None:
    # With Identity, h1 -> t1 -> zero row of w2: w1[:, 1] inactive, w1 active 8, effective 6/18.
    # TopK (no transfer rule) mixes densely: h1 feeds every t, so all 12 of w1 count as active
    # and effective drops to 2/18: less sparse than the truth, never more.
    exact = analyze(_middle_op("Identity"), level=level)
    fallback = analyze(_middle_op("TopK"), level=level)
    assert exact.fallback_ops == ()
    assert fallback.fallback_ops == ("TopK",)
    assert _rows(exact) == {"w1": (0, 8, 0, 1), "w2": (2, 4, 1, 0)}
    assert _rows(fallback) == {"w1": (0, 12, 0, 0), "w2": (2, 4, 1, 0)}
    assert fallback.effective_sparsity <= exact.effective_sparsity
    assert exact.effective_sparsity == pytest.approx(6 / 18)


def _with_shape_of_t(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.value_info.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 3]))
    return model


@pytest.mark.parametrize("level", LEVELS)
def test_custom_domain_op_falls_back_when_its_output_shape_is_declared(level: str) -> None:
    # Same net with custom::Foo in the middle and t's shape given in value_info: Foo mixes
    # densely and is recorded; w1 is all active (12) as with TopK, w2 keeps its 4 active.
    report = analyze(_with_shape_of_t(_middle_op("Foo")), level=level)
    assert report.fallback_ops == ("Foo",)
    assert [f.reason for f in report.fallbacks] == ["no transfer rule for custom::Foo"]
    assert _rows(report) == {"w1": (0, 12, 0, 0), "w2": (2, 4, 1, 0)}
    assert report.effective_sparsity <= analyze(_middle_op("Identity")).effective_sparsity


def test_custom_domain_op_without_shapes_needs_shapes_at_exact_level() -> None:
    # Foo's output shape cannot be inferred, and the exact level needs every map's shape. The
    # input's size is declared, so the message does not ask for --input-shape.
    with pytest.raises(ShapeError, match="'t' has shape unknown; every input's size is known"):
        analyze(_middle_op("Foo"), level="exact")


def test_an_unknown_shape_behind_a_symbolic_input_asks_for_its_size() -> None:
    model = _middle_op("Identity")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    with pytest.raises(ShapeError, match="fix the inputs with --input-shape") as raised:
        analyze(model, level="exact")
    assert "--dim NAME=SIZE" in str(raised.value)  # not only an image's NAME=1,3,H,W


def test_an_unknown_shape_behind_a_symbolic_batch_asks_for_its_size() -> None:
    # Only the batch is symbolic: the analysis counts it as 1, but t (a custom op's output,
    # as an attention reshape computed from the batch) has no shape until the batch is fixed,
    # so the inputs' sizes are not all known and the message says how to give them.
    model = _middle_op("Foo")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(ShapeError, match="'t' has shape unknown; fix the inputs with"):
        analyze(model, level="exact")


def test_matmul_after_an_op_of_unknown_shape_is_still_a_prunable_layer() -> None:
    # x[1,4] -> custom::Foo -> t (shape unknown) -> MatMul(t, w [4, 2]) -> y.
    # w is a constant 2-D MatMul weight, so it is a prunable layer whatever t's rank: the report
    # must list it (4 zeros of 8, all 4 nonzero active behind Foo's dense fallback).
    nodes = [
        helper.make_node("Foo", ["x"], ["t"], domain="custom"),
        helper.make_node("MatMul", ["t", "w"], ["y"]),
    ]
    w = np.array([[1, 0], [1, 0], [1, 0], [1, 0]])
    model = _model(nodes, {"x": [1, 4]}, {"y": [1, 2]}, {"w": w}, domains=("custom",))
    report = analyze(model, level="channel")
    assert report.fallback_ops == ("Foo",)
    assert _rows(report) == {"w": (4, 4, 0, 1)}


# (h) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_transposed_initializer_is_reported_under_its_own_name(level: str) -> None:
    # wt is stored [2, 3]; the MatMul consumes Transpose(wt) = [3, 2] = [[1,0],[0,0],[1,0]].
    # Output y1's column is all zero (dead output), x1's row is all zero (dead input).
    # 4 zeros, 2 active; the row is named after the initializer, not the Transpose output.
    nodes = [
        helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    wt = np.array([[1, 0, 1], [0, 0, 0]])
    report = analyze(_model(nodes, {"x": [1, 3]}, {"y": [1, 2]}, {"wt": wt}), level=level)
    (row,) = report.layers
    assert (row.name, row.op_type, row.shape, row.params) == ("wt", "MatMul", (3, 2), 6)
    assert _rows(report) == {"wt": (4, 2, 1, 1)}


# (i) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_unit_with_bias_but_no_input_path_carries_no_signal(level: str) -> None:
    # Gemm w1 [K=2, N=2] = [[1,0],[1,0]] with bias [1,1]: h1 has no incoming weight, only a bias,
    # so it emits a constant. Its outgoing weights w2[1, :] (w2 all ones) are inactive.
    # w1: 2 zeros, 2 active, dead output h1. w2: 2 active, dead input h1.
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
    ]
    inits = {
        "w1": np.array([[1, 0], [1, 0]]),
        "b1": np.ones(2),
        "w2": np.ones((2, 2)),
        "b2": np.ones(2),
    }
    report = analyze(_model(nodes, {"x": [1, 2]}, {"y": [1, 2]}, inits), level=level)
    assert _rows(report) == {"w1": (2, 2, 0, 1), "w2": (0, 2, 1, 0)}
