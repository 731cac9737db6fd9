"""Reshapes that merge or split the axes before the unit axis, as sequence models run a Linear.

``[B*T, C] -> [B, T, C]`` and back keep each element's place along the unit axis, so the units
pass through; the target's unit entry follows the kept count (``-1`` stays). Every case runs the
pruned model on ONNX Runtime against the masked one and checks it with ``onnx.checker``; the kept
counts are ``ceil((1 - sparsity) * n)`` per layer, worked out in the comments.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init, params
from tests.structured._group_models import graph_model


def _ffn(i: int, x: str, merge: str) -> list[onnx.NodeProto]:
    """Gemm ``w{i}`` on [6, C], split to [2, 3, 5], Relu, merged back to [6, 5] by ``merge``."""
    merged = (
        helper.make_node("Flatten", [f"r{i}"], [f"m{i}"], axis=-1)
        if merge == "flatten"
        else helper.make_node("Reshape", [f"r{i}", "to2d"], [f"m{i}"])
    )
    return [
        helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"]),
        helper.make_node("Reshape", [f"h{i}", "to3d"], [f"s{i}"]),
        helper.make_node("Relu", [f"s{i}"], [f"r{i}"]),
        merged,
    ]


@pytest.mark.parametrize("merge", ["reshape", "flatten"])
def test_units_pass_through_leading_reshapes_and_targets_follow(merge):
    rng = np.random.default_rng(0)
    # Columns of w1 with mean |w| 1, 5, 2, 4, 3: at 0.4, 3 of 5 stay (columns 1, 3, 4).
    w1 = np.array([1.0, 5, 2, 4, 3]) * rng.choice([-1.0, 1.0], (4, 5))
    inits = {
        "w1": w1,
        "b1": rng.normal(size=5),
        "to3d": np.array([2, 3, 5], np.int64),
        "w2": rng.normal(size=(5, 2)),
    }
    if merge == "reshape":
        inits["to2d"] = np.array([-1, 5], np.int64)
    nodes = [*_ffn(1, "x", merge), helper.make_node("MatMul", ["m1", "w2"], ["y"])]
    model = graph_model(nodes, {"x": [6, 4]}, {"y": [6, 2]}, inits)
    result = structured_prune(model, sparsity=0.4)

    assert result.units == {"w1": (3, 5)}
    assert init(result.model, "to3d").tolist() == [2, 3, 3]
    if merge == "reshape":
        assert init(result.model, "to2d").tolist() == [-1, 3]  # the entry unchanged, -1
    kept = [1, 3, 4]
    assert np.array_equal(init(result.model, "w1"), inits["w1"].astype(np.float32)[:, kept])
    assert np.array_equal(init(result.model, "w2"), inits["w2"].astype(np.float32)[kept])
    x = rng.normal(size=(6, 4)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


def test_a_target_two_layers_share_becomes_one_copy_each():
    """One ``[2, 3, 5]`` target for two layers (as dynamo exports write one per shape)."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(size=(4, 5)),
        "b1": rng.normal(size=5),
        "w2": rng.normal(size=(5, 4)),
        "b2": rng.normal(size=4),
        "w3": rng.normal(size=(4, 5)),
        "b3": rng.normal(size=5),
        "w4": rng.normal(size=(5, 2)),
        "to3d": np.array([2, 3, 5], np.int64),
        "to2d": np.array([-1, 5], np.int64),
    }
    nodes = [
        *_ffn(1, "x", "reshape"),
        helper.make_node("Gemm", ["m1", "w2", "b2"], ["h2"]),
        *_ffn(3, "h2", "reshape"),
        helper.make_node("MatMul", ["m3", "w4"], ["y"]),
    ]
    model = graph_model(nodes, {"x": [6, 4]}, {"y": [6, 2]}, inits)
    result = structured_prune(model, sparsity=0.4)

    # ceil(0.6 * 5) = 3 and ceil(0.6 * 4) = 3 units stay.
    assert result.units == {"w1": (3, 5), "w2": (3, 4), "w3": (3, 5)}
    reshapes = {n.output[0]: n.input[1] for n in result.model.graph.node if n.op_type == "Reshape"}
    assert len(set(reshapes.values())) == 4  # a copy each
    targets = {out: init(result.model, name).tolist() for out, name in reshapes.items()}
    assert targets == {"s1": [2, 3, 3], "m1": [-1, 3], "s3": [2, 3, 3], "m3": [-1, 3]}
    assert {"to2d", "to3d"}.isdisjoint(t.name for t in result.model.graph.initializer)  # unread
    # w1 3*4+3, w2 3*3+3, w3 3*3+3, w4 3*2, the targets 2*3+2*2 (before 25, 24, 25, 10, 3+2).
    assert result.compaction.params_after == 15 + 12 + 12 + 6 + 10 == params(result.model)
    assert_pruned_like_masked(result, {"x": rng.normal(size=(6, 4)).astype(np.float32)})


def _concatenated_target(rows: int | str) -> onnx.ModelProto:
    """``_ffn`` whose split target is ``Concat([2], [3, 5])``, computed by a node; x [rows, 4]."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(size=(4, 5)),
        "b1": rng.normal(size=5),
        "two": np.array([2], np.int64),
        "rest": np.array([3, 5], np.int64),
        "to2d": np.array([-1, 5], np.int64),
        "w2": rng.normal(size=(5, 2)),
    }
    nodes = [
        helper.make_node("Concat", ["two", "rest"], ["to3d"], axis=0),
        *_ffn(1, "x", "reshape"),
        helper.make_node("MatMul", ["m1", "w2"], ["y"]),
    ]
    return graph_model(nodes, {"x": [rows, 4]}, {"y": [rows, 2]}, inits)


@pytest.mark.parametrize("rows", ["rows", 6])
def test_a_target_concatenated_from_constants_is_stored_and_follows(rows):
    # The Concat of constants is stored as the target, which then follows the kept units
    # (ceil(0.6 * 5) = 3) as a constant target does, whether the input sizes are declared or
    # not (a target computed from a symbolic size: the next test).
    model = _concatenated_target(rows)
    result = structured_prune(model, sparsity=0.4)

    assert result.units == {"w1": (3, 5)}
    assert not any(n.op_type == "Concat" for n in result.model.graph.node)
    assert init(result.model, "to3d").tolist() == [2, 3, 3]
    rng = np.random.default_rng(1)
    assert_pruned_like_masked(result, {"x": rng.normal(size=(6, 4)).astype(np.float32)})


def _merged_by_run_time_shape() -> onnx.ModelProto:
    """x [batch, 2, 4] -> MatMul w1 [4, 5] -> h -> Reshape to [batch * 2, 5], the target
    computed from Shape(x) at run time -> Relu -> MatMul w2 -> y."""
    rng = np.random.default_rng(3)
    # Columns of w1 with mean |w| 1, 5, 2, 4, 3: at 0.4, 3 of 5 stay (columns 1, 3, 4).
    inits = {
        "w1": np.array([1.0, 5, 2, 4, 3]) * rng.choice([-1.0, 1.0], (4, 5)),
        "w2": rng.normal(size=(5, 2)),
        "zero": np.array([0], np.int64),
        "two": np.array([2], np.int64),
        "width": np.array([5], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "zero"], ["batch"]),
        helper.make_node("Mul", ["batch", "two"], ["rows"]),
        helper.make_node("Concat", ["rows", "width"], ["to2d"], axis=0),
        helper.make_node("Reshape", ["h", "to2d"], ["m"]),
        helper.make_node("Relu", ["m"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return graph_model(nodes, {"x": ["batch", 2, 4]}, {"y": ["rows", 2]}, inits)


def test_a_target_computed_from_a_symbolic_dim_names_it_and_is_followed_once_fixed():
    model = _merged_by_run_time_shape()
    free = structured_prune(model, sparsity=0.4)
    assert free.units == {}  # the Reshape target depends on the batch size: w1's units stay
    (group,) = [g for g in free.blocked if g.layers == ("w1",)]
    assert group.reason == (
        "Reshape node 'm': target shape 'to2d' computed at run time "
        "(symbolic input dims batch: use --dim or --input-shape)"
    )
    fixed = structured_prune(model, sparsity=0.4, dims={"batch": 3})
    assert fixed.units == {"w1": (3, 5)}
    assert all("symbolic" not in g.reason for g in fixed.blocked)
    x = np.random.default_rng(4).normal(size=(3, 2, 4)).astype(np.float32)
    assert_pruned_like_masked(fixed, {"x": x})
