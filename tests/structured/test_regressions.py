"""Minimal graphs the random-graph properties (test_random_graphs.py) reduced bugs to."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxprune.structured import compact, structured_prune
from tests.structured._common import run
from tests.structured._group_models import graph_model

FEED = {"x": np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) + 1}


def test_regression_pad_of_a_constant_unit_is_not_constant():
    # c = [x0, 1] (unit 1: zero filter, bias 1); zero-padded by 1 on every side it is 1 inside
    # and 0 on the border, so y = pad(x0) + pad(1): x0 + 1 inside, 0 on the border (y[0,0,0,0]).
    # Folding unit 1 into conv2's bias as a constant 1 would give 1 on the border instead.
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"]),
        helper.make_node("Pad", ["c", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w2"], ["y"]),
    ]
    inits = {
        "w1": np.array([1, 0, 0, 0], np.float32).reshape(2, 2, 1, 1),
        "b1": np.array([0, 1], np.float32),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "w2": np.ones((1, 2, 1, 1), np.float32),
    }
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1, 4, 4]}, inits)
    expected = run(model, FEED)[0]
    assert expected[0, 0, 0, 0] == 0 and expected[0, 0, 1, 1] == 2
    np.testing.assert_allclose(run(compact(model).model, FEED)[0], expected)


def test_regression_compact_again_after_grouped_conv_became_depthwise():
    # c has 4 channels, only channel 3 live (w1's filters 0-2 zero, no bias: constant 0). The
    # 2-group conv ties c0 with c2 and c1 with c3: {c0, c2} goes, c1 stays with c3 on the first
    # pass. The cut leaves g = Conv(group=2) over [c1, c3] with one input per group, i.e.
    # depthwise, whose output 0 reads only the zero c1: compaction goes on and removes it too.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("Conv", ["c", "w2"], ["g"], group=2),
        helper.make_node("Conv", ["g", "w3"], ["y"]),
    ]
    w1 = np.zeros((4, 2, 1, 1), np.float32)
    w1[3] = 1
    inits = {
        "w1": w1,
        "w2": np.ones((2, 2, 1, 1), np.float32),
        "w3": np.ones((1, 2, 1, 1), np.float32),
    }
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1, 2, 2]}, inits)
    once = compact(model)
    assert once.removed == {"w1": 3, "w2": 1}
    assert compact(once.model).removed == {}
    np.testing.assert_allclose(run(once.model, FEED)[0], run(model, FEED)[0], rtol=1e-6)


def test_regression_compact_again_after_depthwise_became_plain_conv():
    # d = depthwise (multiplier 2) over c = [x0 + x1, 0]: d2, d3 read the zero c1 and go with
    # it; d1 has a zero filter but stays, tied to the live c0, on the first pass. The cut leaves
    # a Conv with group=1 over one channel, a plain conv, whose zero filter d1 then goes too.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("Conv", ["c", "w2"], ["d"], group=2),
        helper.make_node("Conv", ["d", "w3"], ["y"]),
    ]
    w1 = np.zeros((2, 2, 1, 1), np.float32)
    w1[0] = 1
    w2 = np.array([1, 0, 1, 0], np.float32).reshape(4, 1, 1, 1)
    inits = {"w1": w1, "w2": w2, "w3": np.ones((1, 4, 1, 1), np.float32)}
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1, 2, 2]}, inits)
    once = compact(model)
    assert once.removed == {"w1": 1, "w2": 3}
    assert compact(once.model).removed == {}
    np.testing.assert_allclose(run(once.model, FEED)[0], run(model, FEED)[0], rtol=1e-6)


def test_regression_split_sizes_input_does_not_add_parameters():
    # A 1x1 conv, Split of its 2 channels into equal halves (no sizes input), Concat back,
    # another 1x1 conv: 4 + 2 weights, nothing dead, so nothing to remove and nothing to add.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("Split", ["c"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["a", "b"], ["d"], axis=1),
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    inits = {"w1": np.ones((2, 2, 1, 1)), "w2": np.ones((1, 2, 1, 1))}
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1, 2, 2]}, inits)
    result = compact(model)
    assert result.removed == {}
    assert result.params_after <= result.params_before
    assert [n.input for n in result.model.graph.node] == [n.input for n in model.graph.node]
    pruned = structured_prune(model, sparsity=0.0).compaction
    assert pruned.params_after <= pruned.params_before


def _constant_second_channel(inputs: int) -> tuple[list, dict]:
    """c = Conv(x, w1, b1): c0 = x0 + x1 + 0.5, c1 = 2 (a zero filter of ``inputs`` weights)."""
    w1 = np.zeros((2, inputs, 1, 1), np.float32)
    w1[0, :2] = 1
    node = helper.make_node("Conv", ["x", "w1", "b1"], ["c"])
    return [node], {"w1": w1, "b1": np.array([0.5, 2], np.float32)}


def test_regression_fold_into_padded_1x1_conv_never_adds_parameters():
    # y = Conv(c, ones, pads=1): 0 on the border, c0 + 2 inside. Folding c1 would free 2 (its
    # filter) + 1 (bias) + 1 (w2's column) = 4 values but store the kernel (1) and the shape of
    # the 1s it runs over (4): 9 > 8 parameters. The unit stays, the model is unchanged.
    nodes, inits = _constant_second_channel(2)
    nodes.append(helper.make_node("Conv", ["c", "w2"], ["y"], pads=[1, 1, 1, 1]))
    inits["w2"] = np.ones((1, 2, 1, 1), np.float32)
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1, 4, 4]}, inits)
    expected = run(model, FEED)[0]
    assert expected[0, 0, 0, 0] == 0 and expected[0, 0, 1, 1] == 1 + 5 + 0.5 + 2
    result = compact(model)
    assert result.removed == {} and result.params_before == result.params_after == 8
    np.testing.assert_allclose(run(result.model, FEED)[0], expected)


@pytest.mark.parametrize(("inputs", "removed"), [(2, {}), (8, {"w1": 1})])
def test_regression_padded_folds_pay_for_their_kernels_together(inputs, removed):
    # c1 = 2 is read by two padded 3x3 convs; folding it stores a 9-tap kernel and a 4-value
    # shape for each (26) and frees its filter (`inputs`) + bias (1) + two 9-value columns.
    # With 2 inputs that is 21 < 26: kept (each Conv alone, 13 <= 21, looked worth it); with
    # 8 inputs 27 >= 26: folded, one parameter fewer.
    nodes, inits = _constant_second_channel(inputs)
    nodes += [
        helper.make_node("Conv", ["c", "w2"], ["y2"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c", "w3"], ["y3"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["y2", "y3"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    inits |= {"w2": rng.normal(size=(1, 2, 3, 3)), "w3": rng.normal(size=(1, 2, 3, 3))}
    model = graph_model(nodes, {"x": [1, inputs, 2, 2]}, {"y": [1, 1, 2, 2]}, inits)
    feed = {"x": rng.normal(size=(1, inputs, 2, 2)).astype(np.float32)}
    result = compact(model)
    assert result.removed == removed
    before = 2 * inputs + 2 + 18 + 18
    assert result.params_before == before
    assert result.params_after == (before if not removed else before - (inputs + 19) + 26)
    np.testing.assert_allclose(run(result.model, feed)[0], run(model, feed)[0], rtol=1e-5)


def test_regression_folded_gemm_bias_is_scaled_by_beta():
    # f = mean over positions of c = [x0 + x1 + 0.5, 2] = [9.5, 2]; h = f @ w2 (Gemm, beta=2,
    # no C) = [9.5 + 2, 2]; y = relu(h) @ [1, 1] = 13.5. Folding f1 = 2 gives the Gemm a C of
    # 2 * w2[1] / beta = [1, 1]; h1 then reads nothing and holds beta * C1 = 2, folded into the
    # MatMul. Taking h1 as C1 = 1 (beta forgotten) gave 12.5. (Found behind a 2-group Conv.)
    nodes, inits = _constant_second_channel(2)
    nodes += [
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w2"], ["h"], beta=2.0),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w3"], ["y"]),
    ]
    inits |= {"w2": np.array([[1, 0], [1, 1]], np.float32), "w3": np.ones((2, 1), np.float32)}
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 1]}, inits)
    expected = run(model, FEED)[0]
    assert expected.tolist() == [[13.5]]
    result = compact(model)
    assert result.removed == {"w1": 1, "w2": 1}
    np.testing.assert_allclose(run(result.model, FEED)[0], expected)
