"""One parameter stored as equal matrices, one per use (``structured._copies.stored_twice``).

ALBERT applies one layer at every depth; the dynamo exporter writes some of its weights once per
use, as equal initializers. Slicing the copies apart would make two layers of one: each copy is
shared by the readers of all of them, and structured pruning leaves them whole, as it leaves the
one tensor the TorchScript export reads.

The model: x [1, 4] -> MatMul p, Relu -> (MatMul a, Relu, MatMul b, Relu) twice -> y, the second
pass reading copies a2 of a and b2 of b. Every neuron of a is in a group with nothing else in
the way, so only the sharing keeps them; p's channels, read by a, stay for it.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)
P, A, B = RNG.normal(size=(4, 4)), RNG.normal(size=(4, 6)), RNG.normal(size=(6, 4))


def _model(a2: np.ndarray, b2: np.ndarray, a1: np.ndarray = A) -> object:
    nodes = [
        helper.make_node("MatMul", ["x", "p"], ["p_out"], name="fc_p"),
        helper.make_node("Relu", ["p_out"], ["h0"]),
    ]
    for x, (a, b), y in (("h0", ("a", "b"), "h"), ("h", ("a2", "b2"), "y")):
        nodes += [
            helper.make_node("MatMul", [x, a], [f"{a}_out"], name=f"fc_{a}"),
            helper.make_node("Relu", [f"{a}_out"], [f"{a}_act"]),
            helper.make_node("MatMul", [f"{a}_act", b], [f"{b}_out"], name=f"fc_{b}"),
            helper.make_node("Relu", [f"{b}_out"], [y]),
        ]
    inits = {"p": P, "a": a1, "b": B, "a2": a2, "b2": b2}
    return graph_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}, inits)


def test_equal_copies_are_left_whole_and_said_to_be_shared() -> None:
    result = structured_prune(_model(A.copy(), B.copy()), sparsity=0.5)
    assert "a" not in result.units and "a2" not in result.units
    assert init(result.model, "a").shape == init(result.model, "a2").shape == (4, 6)
    reasons = {b.reason for b in result.blocked}
    assert "MatMul node 'fc_a': weight 'a' shared by fc_a, fc_a2" in reasons


@pytest.mark.parametrize("one_value", [False, True])
def test_matrices_that_differ_or_hold_one_value_are_no_copies(one_value) -> None:
    # a2 and b2 unlike a and b (however little), or a and a2 both 0.5 throughout (a constant
    # init, equal to any other such one): p's 4 channels and a's 6 neurons are free, half go.
    x = {"x": RNG.normal(size=(1, 4)).astype(np.float32)}
    a, a2 = (np.full_like(A, 0.5),) * 2 if one_value else (A, A + 1e-3)
    result = structured_prune(_model(a2, B + 1e-3, a1=a), sparsity=0.5)
    assert (result.units["p"], result.units["a"]) == ((2, 4), (3, 6))
    assert init(result.model, "a").shape == (2, 3)
    assert_pruned_like_masked(result, x)
