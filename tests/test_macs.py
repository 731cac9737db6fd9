"""MACs: formulas against hand counts and against reference ops that count their own multiplies.

Each brute-force op below computes its output with explicit loops, counting every multiply
(``total``) and every multiply by a nonzero weight (``nonzero``); its output is checked against
ONNX Runtime, so the counts come from an op known to compute the right thing, not from the
formulas under test. Taps over padding are counted, as ``onnxprune.macs`` documents.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.macs import count_macs, dense_macs, nonzero_macs
from onnxprune.report import format_table
from tests.helpers import single_io_model

RNG = np.random.default_rng(17)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _sparse(*shape: int, zeros: float = 0.5) -> np.ndarray:
    w = RNG.normal(size=shape).astype(np.float32)
    w[RNG.random(shape) < zeros] = 0.0
    return w


def _conv_loops(x, w, group, strides, dilations, pads):
    """2-D convolution by loops; returns (output, multiplies, multiplies by nonzero weights)."""
    n, _, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, cout, oh, ow), np.float64)
    total = nonzero = 0
    per_group = cout // group
    for b, o, i, j in itertools.product(range(n), range(cout), range(oh), range(ow)):
        g = o // per_group
        for c, p, q in itertools.product(range(cin_g), range(kh), range(kw)):
            r, s = i * sh + p * dh - pt, j * sw + q * dw - pl
            total += 1
            nonzero += w[o, c, p, q] != 0
            if 0 <= r < h and 0 <= s < wd:
                y[b, o, i, j] += x[b, g * cin_g + c, r, s] * w[o, c, p, q]
    return y, total, nonzero


def _conv_transpose_loops(x, w, group, strides):
    """1-D transposed convolution (no padding) by loops, scattering every input element."""
    n, cin, length = x.shape
    _, cout_g, k = w.shape
    per_group = cin // group
    y = np.zeros((n, cout_g * group, (length - 1) * strides + k), np.float64)
    total = nonzero = 0
    for b, c, i in itertools.product(range(n), range(cin), range(length)):
        g = c // per_group
        for o, t in itertools.product(range(cout_g), range(k)):
            total += 1
            nonzero += w[c, o, t] != 0
            y[b, g * cout_g + o, i * strides + t] += x[b, c, i] * w[c, o, t]
    return y, total, nonzero


def _matmul_loops(a, b, weight_side):
    """``a @ b`` (numpy broadcasting of the batch axes) by loops over output elements and K."""
    y = np.matmul(a.astype(np.float64), b.astype(np.float64))
    a3 = np.broadcast_to(a, (*y.shape[:-2], *a.shape[-2:]))
    b3 = np.broadcast_to(b, (*y.shape[:-2], *b.shape[-2:]))
    weight = a3 if weight_side == 0 else b3
    total = nonzero = 0
    for idx in np.ndindex(*y.shape):
        *batch, i, j = idx
        for k in range(a.shape[-1]):
            total += 1
            w = weight[(*batch, i, k)] if weight_side == 0 else weight[(*batch, k, j)]
            nonzero += w != 0
    return y, total, nonzero


CONV_CASES = [
    # (x shape, weight shape, group, strides, dilations, pads)
    ((1, 3, 8, 8), (4, 3, 3, 3), 1, (1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 4, 9, 7), (6, 2, 3, 2), 2, (2, 1), (1, 2), (0, 1, 1, 0)),
    ((1, 4, 10, 10), (4, 1, 3, 3), 4, (2, 2), (2, 2), (2, 2, 2, 2)),  # depthwise, dilated
    ((1, 2, 5, 6), (3, 2, 1, 1), 1, (3, 2), (1, 1), (0, 0, 0, 0)),  # 1x1 strided
]


@pytest.mark.parametrize(("xs", "ws", "group", "strides", "dilations", "pads"), CONV_CASES)
def test_conv_macs_equal_a_loop_convolution_that_counts(xs, ws, group, strides, dilations, pads):
    x = RNG.normal(size=xs).astype(np.float32)
    w = _sparse(*ws)
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], group=group, strides=strides, dilations=dilations, pads=pads
    )
    model = single_io_model([node], list(xs), None, {"w": w})
    y, total, nonzero = _conv_loops(x, w, group, strides, dilations, pads)
    np.testing.assert_allclose(_run(model, x), y, rtol=1e-4, atol=1e-4)
    count = count_macs(model)
    assert (count.macs, count.nonzero_macs) == (total, nonzero)
    assert count.nodes[0].weight == "w"


def test_conv_macs_by_hand():
    # 16 filters of 3x3x3 over an 8x8 output: 16 * 64 * 27 = 27,648; stride 2 (4x4): a quarter.
    assert dense_macs("Conv", [(1, 3, 8, 8), (16, 3, 3, 3)], (1, 16, 8, 8)) == 27_648
    assert dense_macs("Conv", [(1, 3, 8, 8), (16, 3, 3, 3)], (1, 16, 4, 4)) == 6_912
    # group 4 over 8 channels: each filter sees 2 channels; 8 filters * 2 * 9 * 36 positions
    assert dense_macs("Conv", [(1, 8, 6, 6), (8, 2, 3, 3)], (1, 8, 6, 6)) == 5_184
    assert dense_macs("Conv", [(1, 3, 8, 8), (16, 3, 3, 3)], None) is None  # shape unknown


@pytest.mark.parametrize(("group", "stride"), [(1, 1), (2, 2), (4, 3)])
def test_conv_transpose_macs_equal_a_loop_that_counts(group, stride):
    x = RNG.normal(size=(2, 4, 5)).astype(np.float32)
    w = _sparse(4, 3, 2)  # [Cin, Cout / group, k]
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=group, strides=[stride])
    model = single_io_model([node], [2, 4, 5], None, {"w": w})
    y, total, nonzero = _conv_transpose_loops(x, w, group, stride)
    np.testing.assert_allclose(_run(model, x), y, rtol=1e-4, atol=1e-4)
    count = count_macs(model)
    assert (count.macs, count.nonzero_macs) == (total, nonzero)
    # by hand: every input element (2 * 4 * 5) times the 3 * 2 weights it scatters
    assert total == 2 * 4 * 5 * 3 * 2


MATMUL_CASES = [
    # (activation shape, weight shape, weight side): y = x @ w, or w @ x when the weight is A
    ((5, 4), (4, 3), 1),
    ((2, 3, 5, 4), (4, 6), 1),  # batched, the weight broadcast
    ((4, 3), (5, 4), 0),  # the weight on the left
    ((2, 4, 3), (5, 4), 0),
]


@pytest.mark.parametrize(("xs", "ws", "side"), MATMUL_CASES)
def test_matmul_macs_equal_a_loop_that_counts(xs, ws, side):
    x = RNG.normal(size=xs).astype(np.float32)
    w = _sparse(*ws)
    inputs = ["x", "w"] if side == 1 else ["w", "x"]
    model = single_io_model([helper.make_node("MatMul", inputs, ["y"])], list(xs), None, {"w": w})
    a, b = (x, w) if side == 1 else (w, x)
    y, total, nonzero = _matmul_loops(a, b, side)
    np.testing.assert_allclose(_run(model, x), y, rtol=1e-4, atol=1e-4)
    count = count_macs(model)
    assert (count.macs, count.nonzero_macs) == (total, nonzero)


def test_matmul_of_two_activations_counts_dense():
    # attention-like: [2, 3, 4] @ [2, 4, 5] -> 2 * 3 * 5 outputs of 4 products each
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 4])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("MatMul", ["q", "k"], ["y"])], "g", [q, k], [y])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    count = count_macs(model)
    assert (count.macs, count.nonzero_macs) == (120, 120)
    assert count.nodes[0].weight is None
    assert dense_macs("MatMul", [(4,), (4, 5)], (5,)) == 20  # a 1-D operand


@pytest.mark.parametrize(("trans_a", "trans_b"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_macs_by_layout(trans_a, trans_b):
    # M=5, K=4, N=3 in either layout: 60 MACs; the weight B's zeros are skipped once per row.
    x = RNG.normal(size=(4, 5) if trans_a else (5, 4)).astype(np.float32)
    w = _sparse(*((3, 4) if trans_b else (4, 3)))
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transA=trans_a, transB=trans_b)
    model = single_io_model([node], list(x.shape), None, {"w": w})
    count = count_macs(model)
    a = x.T if trans_a else x
    b = w.T if trans_b else w
    y, total, nonzero = _matmul_loops(a, b, 1)
    np.testing.assert_allclose(_run(model, x), y, rtol=1e-4, atol=1e-4)
    assert (count.macs, count.nonzero_macs) == (60, nonzero) == (total, nonzero)


def test_symbolic_batch_counts_one_sample_and_other_symbols_are_unknown():
    w = _sparse(4, 3)
    per_sample = single_io_model([helper.make_node("MatMul", ["x", "w"], ["y"])], ["N", 4], None,
                                 {"w": w})  # fmt: skip
    assert count_macs(per_sample).macs == 12
    seq = single_io_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [1, "T", 4], None,
                          {"w": w})  # fmt: skip
    assert count_macs(seq).macs is None
    assert count_macs(seq, {"x": (1, 7, 4)}).macs == 7 * 12  # --input-shape fixes it


def _if_after_matmul(branch_op: str) -> onnx.ModelProto:
    """``h = x[N,4] @ w [4,3]``, then ``If(c)``: ``branch_op`` of h, or h as it is."""

    def branch(name: str, node: onnx.NodeProto, inits: list) -> onnx.GraphProto:
        out = [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, ["N", 3])]
        return helper.make_graph([node], name, [], out, inits)

    if branch_op == "MatMul":  # a layer in the then branch: v [3,3]
        then = helper.make_node("MatMul", ["h", "v"], ["t"])
        inits = [numpy_helper.from_array(np.ones((3, 3), np.float32), "v")]
    else:
        then, inits = helper.make_node(branch_op, ["h"], ["t"]), []
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node(
            "If",
            ["c"],
            ["y"],
            then_branch=branch("then", then, inits),
            else_branch=branch("else", helper.make_node("Identity", ["h"], ["e"]), []),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "if",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.ones((4, 3), np.float32), "w")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_layers_inside_an_if_make_the_total_unknown_and_say_why():
    # The then branch multiplies by v (9 MACs a sample) or not at all: no one total is right.
    # Counting the main graph's 12 alone said 'MACs: 12' (Silero VAD, every layer in an If: 0).
    plain = count_macs(_if_after_matmul("Relu"))
    assert (plain.macs, plain.nonzero_macs) == (12, 12)  # no layer in the bodies: counted
    cost = count_macs(_if_after_matmul("MatMul"))
    assert (cost.macs, cost.nonzero_macs) == (None, None)
    assert cost.unknown_because == "layers inside If/Loop/Scan bodies run 0, 1 or many times"
    text = format_table(onnxprune.analyze(_if_after_matmul("MatMul")))
    assert "MACs: unknown (layers inside If/Loop/Scan bodies run 0, 1 or many times)" in text


def test_other_ops_are_not_counted():
    assert dense_macs("Relu", [(1, 16)], (1, 16)) == 0
    assert dense_macs("AveragePool", [(1, 4, 8, 8)], (1, 4, 4, 4)) == 0
    assert nonzero_macs(None, 10, 3) is None


def _cnn(w1: np.ndarray, w2: np.ndarray, w3: np.ndarray, group: int = 2) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], group=group),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1),
    ]
    return single_io_model(nodes, [1, 2, 7, 7], None, {"w1": w1, "w2": w2, "w3": w3})


def test_pruned_model_nonzero_macs_equal_a_brute_force_count():
    w1 = RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w2 = RNG.normal(size=(6, 2, 3, 3)).astype(np.float32)
    w3 = RNG.normal(size=(5, 6 * 3 * 3)).astype(np.float32)
    result = onnxprune.prune(_cnn(w1, w2, w3), sparsity=0.6, score="magnitude")
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    x = RNG.normal(size=(1, 2, 7, 7)).astype(np.float32)
    c1, total1, nz1 = _conv_loops(x, inits["w1"], 1, (1, 1), (1, 1), (1, 1, 1, 1))
    c2, total2, nz2 = _conv_loops(np.maximum(c1, 0), inits["w2"], 2, (2, 2), (1, 1), (0,) * 4)
    f = np.maximum(c2, 0).reshape(1, -1)
    y, total3, nz3 = _matmul_loops(f, inits["w3"].T, 1)
    np.testing.assert_allclose(_run(result.model, x), y, rtol=1e-4, atol=1e-4)
    report = result.report
    rows = {layer.name: (layer.macs, layer.nonzero_macs) for layer in report.layers}
    assert rows == {"w1": (total1, nz1), "w2": (total2, nz2), "w3": (total3, nz3)}
    assert report.macs == total1 + total2 + total3 == count_macs(result.model).macs
    assert report.nonzero_macs == nz1 + nz2 + nz3 < report.macs
    assert report.to_dict()["nonzero_macs"] == report.nonzero_macs


def test_compaction_shrinks_the_dense_count():
    w1 = RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w2 = RNG.normal(size=(6, 4, 3, 3)).astype(np.float32)
    w3 = RNG.normal(size=(5, 6 * 3 * 3)).astype(np.float32)
    model = _cnn(w1, w2, w3, group=1)
    dense = count_macs(model).macs
    # 4*2*9 * 49 + 6*4*9 * 9 + 5*54 = 3528 + 1944 + 270
    assert dense == 5742
    # Two zero filters of c1: compaction removes them and the 2 input channels of c2 they fed.
    w1[:2] = 0.0
    compacted = onnxprune.compact(_cnn(w1, w2, w3, group=1))
    assert compacted.removed == {"w1": 2}
    after = 2 * 2 * 9 * 49 + 6 * 2 * 9 * 9 + 270
    summary = compacted.to_dict()
    assert summary["macs_before"] == dense
    assert summary["nonzero_macs_before"] == dense - 2 * 2 * 9 * 49
    assert summary["macs_after"] == count_macs(compacted.model).macs == after


def test_structured_prune_reports_the_original_and_the_smaller_count():
    w1 = RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w2 = RNG.normal(size=(6, 4, 3, 3)).astype(np.float32)
    w3 = RNG.normal(size=(5, 6 * 3 * 3)).astype(np.float32)
    model = _cnn(w1, w2, w3, group=1)
    result = onnxprune.prune(model, sparsity=0.5, structured="l1")
    summary = result.structured.to_dict()
    assert summary["macs_before"] == summary["nonzero_macs_before"] == count_macs(model).macs
    assert summary["macs_after"] == count_macs(result.model).macs < summary["macs_before"]


def _recurrent(op: str, gates: int, x_shape, *, directions: int = 1, layout: int = 0):
    hidden, inputs = 4, x_shape[-1]
    w = _sparse(directions, gates * hidden, inputs)
    r = _sparse(directions, gates * hidden, hidden)
    attrs = {"hidden_size": hidden, "layout": layout}
    if directions == 2:
        attrs["direction"] = "bidirectional"
    node = helper.make_node(op, ["x", "w", "r"], ["y"], **attrs)
    return single_io_model([node], list(x_shape), None, {"w": w, "r": r}), w, r


@pytest.mark.parametrize(
    ("op", "gates", "x_shape", "directions", "layout"),
    [("LSTM", 4, (5, 2, 3), 1, 0), ("GRU", 3, (2, 6, 3), 2, 1), ("RNN", 1, (4, 1, 2), 1, 0)],
)
def test_recurrent_macs_are_each_weight_once_per_step_and_sequence(
    op, gates, x_shape, directions, layout
):
    model, w, r = _recurrent(op, gates, x_shape, directions=directions, layout=layout)
    steps = x_shape[0] * x_shape[1]  # seq_length x batch, in either layout
    report = onnxprune.analyze(model)
    rows = {layer.name: (layer.macs, layer.nonzero_macs) for layer in report.layers}
    # by hand: W is [directions, gates*hidden, input], R [directions, gates*hidden, hidden]
    assert rows == {
        "w": (steps * w.size, steps * int(np.count_nonzero(w))),
        "r": (steps * r.size, steps * int(np.count_nonzero(r))),
    }
    assert count_macs(model).macs == steps * (w.size + r.size) == report.macs


def test_recurrent_macs_need_the_sequence_length():
    model, w, r = _recurrent("LSTM", 4, ("T", 2, 3))
    assert count_macs(model).macs is None  # a symbolic sequence length is not the batch
    assert count_macs(model, {"x": (7, 2, 3)}).macs == 7 * 2 * (w.size + r.size)


def _attention_macs(model: onnx.ModelProto) -> dict[str, int | None]:
    return {n.op_type: n.macs for n in onnxprune.analyze(model).cost.nodes if "::" in n.op_type}


def test_fused_attention_counts_its_scores_and_weighed_values_by_hand():
    from tests import attention_models as am

    # Attention over x [2, 6, 8] (Q = V = 8 channels): 2 sequences x 6 queries x 6 keys, each
    # pair 8 MACs for the score and 8 for the weighed values; its QKV projection is a MatMul
    # of 2 * 6 * 8 * 24.
    fused = onnxprune.analyze(am.fused()).cost.nodes
    assert [(n.op_type, n.macs) for n in fused[:2]] == [
        ("MatMul", 2 * 6 * 8 * 24),
        ("com.microsoft::Attention", 2 * 6 * 6 * (8 + 8)),
    ]
    # MultiHeadAttention over Q, V of 16 channels, 1 x 6 x 6 pairs
    assert _attention_macs(am.split()) == {"com.microsoft::MultiHeadAttention": 36 * 32}
    # 4 query heads of 8 over 2 K/V heads: each query head scores and weighs like its own
    grouped = am.split("GroupQueryAttention", heads=4, kv=2)
    assert _attention_macs(grouped) == {"com.microsoft::GroupQueryAttention": 36 * 64}
    packed = am.split("GroupQueryAttention", heads=4, kv=2, packed=True)
    assert _attention_macs(packed) == {"com.microsoft::GroupQueryAttention": 36 * 64}
