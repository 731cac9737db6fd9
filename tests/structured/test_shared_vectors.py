"""A bias an exporter stored once for several layers: each layer slices its own copy.

Exporters store equal initializers once (a fresh BERT's zero biases; TorchScript feeds the
other readers through ``Identity``). Such a vector is no tie: structured pruning gives each reader
a copy, so the layers around it are pruned, and stores the copies left equal once again.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init, params
from tests.structured._group_models import graph_model


def _two_ffns() -> onnx.ModelProto:
    """Two feed-forward blocks whose biases the exporter stored once.

    x[2,4] -> W1[4,6] + b -> Relu -> W2[6,4] + c -> r (4 units, prunable)
    r -> W3[4,6] + Identity(b) -> Relu -> W4[6,4] + c -> y (graph output: W4's units stay)
    z = x + c (a graph input's units: stay)

    b (6 zeros) is read by the Adds of W1 and (through Identity) W3; c (4 values) by the Adds of
    W2, W4 and z. At 50% per layer W1 and W3 keep 3 of 6 units (their copies of b: 3 zeros each,
    equal, stored once), W2 keeps 2 of 4 (2 entries of its copy of c); c stays whole for W4 and
    z (one tensor).
    """
    rng = np.random.default_rng(0)
    inits = {
        "W1": rng.normal(size=(4, 6)),
        "b": np.zeros(6),
        "W2": rng.normal(size=(6, 4)),
        "c": rng.normal(size=4),
        "W3": rng.normal(size=(4, 6)),
        "W4": rng.normal(size=(6, 4)),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b"], ["a1"], name="fc1_bias"),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "W2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "c"], ["r"], name="fc2_bias"),
        helper.make_node("MatMul", ["r", "W3"], ["m3"], name="fc3"),
        helper.make_node("Identity", ["b"], ["b3"], name="dedup"),
        helper.make_node("Add", ["m3", "b3"], ["a3"], name="fc3_bias"),
        helper.make_node("Relu", ["a3"], ["h3"]),
        helper.make_node("MatMul", ["h3", "W4"], ["m4"], name="fc4"),
        helper.make_node("Add", ["m4", "c"], ["y"], name="fc4_bias"),
        helper.make_node("Add", ["x", "c"], ["z"], name="shift"),
    ]
    return graph_model(nodes, {"x": [2, 4]}, {"y": [2, 4], "z": [2, 4]}, inits)


FEED = {"x": np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)}


def test_layers_reading_one_stored_bias_are_pruned_each_on_its_own():
    model = _two_ffns()
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {"W1": (3, 6), "W2": (2, 4), "W3": (3, 6)}
    shapes = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    assert (shapes["W1"], shapes["W2"], shapes["W3"], shapes["W4"]) == (
        (4, 3), (3, 2), (2, 3), (3, 4),
    )  # fmt: skip
    biases = sorted(shape for name, shape in shapes.items() if name.startswith(("b", "c")))
    assert biases == [(2,), (3,), (4,)]  # W2's c; b of W1 and W3; c of W4 and z
    readers = {n.name: list(n.input) for n in result.model.graph.node}
    assert readers["fc1_bias"][1] == readers["fc3_bias"][1]
    np.testing.assert_array_equal(init(result.model, readers["fc1_bias"][1]), np.zeros(3))
    assert readers["fc4_bias"][1] == readers["shift"][1]
    np.testing.assert_array_equal(init(result.model, readers["shift"][1]), init(model, "c"))
    assert "Identity" not in [n.op_type for n in result.model.graph.node]
    assert_pruned_like_masked(result, FEED)


def test_copies_are_counted_once_and_stored_once_when_equal():
    model = _two_ffns()
    result = structured_prune(model, sparsity=0.5)

    # W1, W3, W4, W2 24 each + b 6 + c 4 stored; the readers' copies count for nothing
    assert result.compaction.params_before == params(model) == 106
    # W1 12, W2 6, W3 6, W4 12; b 3 (W1's and W3's); c 2 (W2's) and 4 (W4's and z's)
    assert result.compaction.params_after == params(result.model) == 45
    # the masked model zeroes filters only: every copy equal again, each vector stored once
    assert params(result.masked) == params(model)
