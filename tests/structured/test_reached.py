"""Structured results state the sparsity reached, and warn when it is far from the target.

The chain used most: x [1, 4] -> MatMul w1 (8 units) -> Relu -> MatMul w2 (6 units) -> Relu ->
MatMul w3 (2 units) -> y. w3's 2 units are the graph output and stay; w1 and w2 are the prunable
layers, 8 + 6 = 14 groups. Counts below are worked out from ``ceil((1 - sparsity) * n)`` kept per
layer, rounded up to a multiple of ``round_to``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxprune.structured import BlockedGroup, structured_prune
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def chain():
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="m1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="m2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "w3"], ["y"], name="m3"),
    ]
    inits = {"w1": _w(4, 8), "w2": _w(8, 6), "w3": _w(6, 2)}
    return graph_model(nodes, {"x": [1, 4]}, {"y": [1, 2]}, inits)


def test_half_of_each_layer_reaches_the_target_exactly():
    # w1 keeps ceil(0.5 * 8) = 4, w2 keeps ceil(0.5 * 6) = 3: 4 + 3 = 7 of 14 groups go.
    result = structured_prune(chain(), sparsity=0.5)
    assert (result.groups_removed, result.groups_prunable) == (7, 14)
    assert result.group_sparsity == 0.5
    assert result.layer_sparsity == {"w1": 0.5, "w2": 0.5}
    assert result.warnings == ()
    # Parameters: 4*8 + 8*6 + 6*2 = 92 before; 4*4 + 4*3 + 3*2 = 34 after. With one row of x,
    # every weight is one multiply-accumulate, and no weight is zero: MACs 92 -> 34 both ways.
    assert result.to_dict() == {
        "sparsity": 0.5,
        "scope": "layer",
        "round_to": 1,
        "group_sparsity": 0.5,
        "groups_removed": 7,
        "groups_prunable": 14,
        "units": {"w1": [4, 8], "w2": [3, 6]},
        "layer_sparsity": {"w1": 0.5, "w2": 0.5},
        "kinds": {"w1": "neuron", "w2": "neuron"},  # MatMul outputs
        "labels": {"w1": "m1", "w2": "m2", "w3": "m3"},  # the nodes' names; w3 is blocked
        "totals": {"neuron": [7, 14]},  # 4 + 3 kept of 8 + 6
        "removed": {"w1": 4, "w2": 3},
        "params_before": 92,
        "params_after": 34,
        "macs_before": 92,
        "macs_after": 34,
        "nonzero_macs_before": 92,
        "nonzero_macs_after": 34,
        "warnings": [],
        "blocked": [
            {"layers": ["w3"], "reason": "graph output 'y'", "op_type": None, "node": None,
             "groups": 2},
        ],
        "reconstruction": None,  # no calibration data given
    }  # fmt: skip


def test_rounding_to_a_multiple_warns_when_it_moves_the_target():
    # round_to=4: w1 keeps 4 (4 go); w2 would keep 3, rounded up to 4 (2 go): 6 of 14 = 42.86%,
    # 7.1 points below 50%. Without rounding 7 would go, so round_to is the cause.
    result = structured_prune(chain(), sparsity=0.5, round_to=4)
    assert result.units == {"w1": (4, 8), "w2": (4, 6)}
    assert (result.groups_removed, result.groups_prunable) == (6, 14)
    assert result.layer_sparsity == {"w1": 0.5, "w2": 2 / 6}
    assert result.warnings == (
        "removed 42.86% of the prunable groups (6 of 14), 7.1 points below the target 50.00%: "
        "each layer keeps a multiple of round_to=4 channels, neurons or head columns",
    )


def test_per_layer_ceiling_warns_on_small_layers():
    # 0.3: w1 keeps ceil(5.6) = 6 (2 go), w2 keeps ceil(4.2) = 5 (1 goes): 3 of 14 = 21.43%,
    # 8.6 points below 30%.
    result = structured_prune(chain(), sparsity=0.3)
    assert (result.groups_removed, result.groups_prunable) == (3, 14)
    assert result.warnings == (
        "removed 21.43% of the prunable groups (3 of 14), 8.6 points below the target 30.00%: "
        "each layer keeps ceil((1 - sparsity) * n) of its n groups",
    )


def test_global_scope_with_rounding_that_undoes_everything():
    # Global 0.3 drops round(0.3 * 14) = 4 groups, then each layer's kept count is rounded up
    # to a multiple of 8 (at most its size): w1 keeps 8, w2 keeps 6, nothing goes.
    result = structured_prune(chain(), sparsity=0.3, scope="global", round_to=8)
    assert result.units == {"w1": (8, 8), "w2": (6, 6)}
    assert (result.groups_removed, result.group_sparsity) == (0, 0.0)
    assert result.warnings == (
        "removed 0.00% of the prunable groups (0 of 14), 30.0 points below the target 30.00%: "
        "each layer keeps a multiple of round_to=8 channels, neurons or head columns",
    )
    plain = structured_prune(chain(), sparsity=0.3, scope="global")
    assert plain.groups_removed == 4  # round(0.3 * 14): 28.57%, within 5 points: no warning
    assert plain.warnings == ()


def _split_model():
    # w1 (8 units) -> Split [4, 4]: the first half is the graph output a, the second half goes
    # through Relu to w2 (2 units, output y2). w1 is one layer of 8 groups, 4 of them blocked.
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="m1"),
        helper.make_node("Split", ["h", "sizes"], ["a", "b"], name="sp", axis=1),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y2"], name="m2"),
    ]
    inits = {"w1": _w(4, 8), "w2": _w(4, 2), "sizes": np.array([4, 4], np.int64)}
    return graph_model(nodes, {"x": [1, 4]}, {"a": [1, 4], "y2": [1, 2]}, inits)


def test_blocked_groups_inside_a_pruned_layer_are_named_as_the_cause():
    # 0.75 of w1's 8 groups would leave ceil(2) = 2, but only the 4 free groups can go: 4 of 8.
    result = structured_prune(_split_model(), sparsity=0.75)
    assert result.units == {"w1": (4, 8)}
    assert (result.groups_removed, result.groups_prunable) == (4, 8)
    assert result.warnings == (
        "removed 50.00% of the prunable groups (4 of 8), 25.0 points below the target 75.00%: "
        "4 groups of these layers had to stay (blocked or excluded)",
    )
    assert structured_prune(_split_model(), sparsity=0.5).warnings == ()  # 4 of 8 is the target


def _blocked_everywhere():
    # w1 (4 channels) -> Softmax over channels; w2 (3 channels) is the graph output y.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="c1"),
        helper.make_node("Softmax", ["h"], ["s"], name="sm", axis=1),
        helper.make_node("Conv", ["s", "w2"], ["y"], name="c2"),
    ]
    inits = {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)}
    return graph_model(nodes, {"x": [1, 2, 4, 4]}, {"y": [1, 3, 4, 4]}, inits)


def test_nothing_removable_warns_and_names_the_reasons():
    result = structured_prune(_blocked_everywhere(), sparsity=0.4)
    assert result.units == {}
    assert (result.groups_removed, result.groups_prunable, result.group_sparsity) == (0, 0, None)
    assert result.compaction.params_before == result.compaction.params_after == 8 + 12
    assert result.warnings == (
        "nothing was removed: every group is blocked, mainly by Softmax node 'sm': it mixes "
        "along the unit axis (4 groups); graph output 'y' (3 groups)",
    )
    assert result.to_dict()["group_sparsity"] is None
    assert structured_prune(_blocked_everywhere(), sparsity=0).warnings == ()  # nothing asked


def test_the_warning_names_the_three_biggest_reasons_and_counts_the_rest():
    # Five layers, each its own graph output y1..y5 with 1..5 units: five reasons.
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(1, 6)]
    inits = {f"w{i}": _w(2, i) for i in range(1, 6)}
    model = graph_model(nodes, {"x": [1, 2]}, {f"y{i}": [1, i] for i in range(1, 6)}, inits)
    (warning,) = structured_prune(model, sparsity=0.5).warnings
    assert warning == (
        "nothing was removed: every group is blocked, mainly by graph output 'y5' (5 groups); "
        "graph output 'y4' (4 groups); graph output 'y3' (3 groups); and 2 more reasons"
    )


def test_by_reason_merges_alike_reasons_most_groups_first():
    from onnxprune.structured.blocked import by_reason

    a = BlockedGroup(("w1",), "graph output 'y'", None, None, 1)
    b = BlockedGroup(("w2", "w1"), "graph output 'y'", None, None, 2)
    c = BlockedGroup(("w3",), "Softmax node 'sm': it mixes along the unit axis", "Softmax", "sm", 2)
    assert by_reason([a, c, b]) == [
        BlockedGroup(("w1", "w2"), "graph output 'y'", None, None, 3),
        c,
    ]
    assert BlockedGroup.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_reached_counts_match_the_units_kept(scope):
    # The overall count is the per-layer one summed, when every layer's groups are its own.
    result = structured_prune(chain(), sparsity=0.6, scope=scope)
    removed = sum(total - kept for kept, total in result.units.values())
    assert result.groups_removed == removed
    assert result.groups_prunable == 14
