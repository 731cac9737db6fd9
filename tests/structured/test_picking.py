"""Units picked along their axis (``structured.ops.picking``): a range by Slice, positions by
Gather along another axis. Multi-query attention's picks: tests/structured/test_multi_query.py.

Both models: x [1, C] or [1, T, C] -> MatMul w1 (6 neurons, column j of magnitude MAG[j] with
random signs) -> ... -> MatMul w2 -> y. At sparsity 0.5 w1 keeps 3 of 6 neurons, those of the
highest l1 score (the mean |w| of the column): 0, 4 and 3 (5.0, 3.0, 2.0).
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_close, assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model

C, T = 4, 3
MAG = [5.0, 1.0, 0.1, 2.0, 3.0, 0.2]
RNG = np.random.default_rng(0)
W1 = RNG.choice([-1.0, 1.0], size=(C, 6)) * np.array(MAG)


def test_a_slice_of_a_range_of_neurons_follows_the_kept_ones() -> None:
    # Slice [1:5] reads neurons 1..4; neurons 0 and 5 reach nothing. Kept 0, 3, 4, and
    # compaction cuts neuron 0 too, which reaches nothing: the Slice becomes [0:2] (no kept
    # neuron before 1, two in 1..4), w2 keeps rows 2 and 3 (neurons 3, 4).
    w2 = RNG.normal(size=(4, 2))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Slice", ["h", "one", "five", "axis"], ["s"], name="pick"),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    ints = {k: np.array([v], np.int64) for k, v in {"one": 1, "five": 5, "axis": 1}.items()}
    model = graph_model(nodes, {"x": [1, C]}, {"y": [1, 2]}, {"w1": W1, "w2": w2} | ints)
    x = RNG.normal(size=(1, C)).astype(np.float32)
    result = structured_prune(model, sparsity=0.5)
    assert_pruned_like_masked(result, {"x": x})
    assert result.units["w1"] == (3, 6)
    expected = np.maximum(x @ W1[:, [3, 4]], 0) @ w2[[2, 3]]
    assert_close([expected], run(result.model, {"x": x}))
    pick = next(n for n in result.model.graph.node if n.name == "pick")
    values = {t.name: numpy_helper.to_array(t).tolist() for t in result.model.graph.initializer}
    assert (values[pick.input[1]], values[pick.input[2]]) == ([0], [2])
    assert init(result.model, "w1").shape == (C, 2)


def test_a_gather_of_one_position_passes_the_neurons_through() -> None:
    # The first token's features ([CLS]): Gather index 0 on the sequence axis of [1, T, 6]
    # gives [1, 6], neuron for neuron. Before, the Gather blocked every neuron of w1.
    w2 = RNG.normal(size=(6, 2))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Gather", ["h", "first"], ["g"], axis=1),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    inits = {"w1": W1, "w2": w2, "first": np.array(0, np.int64)}
    model = graph_model(nodes, {"x": [1, T, C]}, {"y": [1, 2]}, inits)
    x = RNG.normal(size=(1, T, C)).astype(np.float32)
    result = structured_prune(model, sparsity=0.5)
    assert_pruned_like_masked(result, {"x": x})
    assert result.units["w1"] == (3, 6)
    assert init(result.model, "w2").shape == (3, 2)
    expected = np.maximum(x[:, 0] @ W1[:, [0, 3, 4]], 0) @ w2[[0, 3, 4]]
    assert_close([expected], run(result.model, {"x": x}))
