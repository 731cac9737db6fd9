"""Heads merged with the batch axis and split back, as torch's dynamo export transposes K.

``Reshape [B, H, T, D] -> [B*H, T, D]``, ``Transpose [0, 2, 1]``, ``Reshape -> [B, H, D, T]``
(``onnxprune.structured.ops.interleaved``): index ``b*H + h`` of the merged axis holds head
``h``, so the heads stay units through the round trip. Each model here is one attention layer,
``B = 2, T = 3, C = 4``, two heads of ``D = 2`` channels; head 1's Q, K, V columns and output
rows are ten times smaller than head 0's, so at sparsity 0.5 (``ceil(0.5 * 2) = 1`` head stays
per layer) head 1 goes, and with it columns 2 and 3 of Q, K and V and rows 2 and 3 of the
output projection. Every pruned model runs on ONNX Runtime against its masked model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init
from tests.structured._group_models import graph_model

B, T, C, D = 2, 3, 4, 2
HEAD_1 = [2, 3]
"""Head 1's channels: the columns of Q, K and V and the rows of the output projection."""


def _projections(batch: int) -> tuple[list, list, dict[str, np.ndarray]]:
    """Q, K and V of ``x`` [batch, T, C] as ``qt``, ``kt``, ``vt`` [batch, H, T, D] (nodes),
    the output projection of ``o`` [batch, H, T, D] to ``y`` [batch, T, 5] (nodes), and their
    initializers."""
    rng = np.random.default_rng(0)
    small = np.array([1.0, 1.0, 0.1, 0.1])  # head 1's channels ten times smaller
    inits = {f"w{p}": rng.normal(size=(C, C)) * small for p in "qkv"}
    inits["wo"] = rng.normal(size=(C, 5)) * small[:, None]
    inits |= {f"split_{p}": np.array([batch, T, 2, D], np.int64) for p in "qkv"}
    inits["back"] = np.array([batch, T, C], np.int64)
    nodes = []
    for p in "qkv":
        nodes += [
            helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}"]),
            helper.make_node("Reshape", [p, f"split_{p}"], [f"{p}h"]),
            helper.make_node("Transpose", [f"{p}h"], [f"{p}t"], perm=[0, 2, 1, 3]),
        ]
    output = [
        helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "back"], ["om"]),
        helper.make_node("MatMul", ["om", "wo"], ["y"]),
    ]
    return nodes, output, inits


def _model(
    body: list[onnx.NodeProto], targets: dict[str, list[int]], batch: int = B
) -> onnx.ModelProto:
    """The projections around ``body``, which turns ``qt``, ``kt``, ``vt`` into ``o``;
    ``targets``: its Reshape targets, by name."""
    projections, output, inits = _projections(batch)
    inits |= {name: np.array(value, np.int64) for name, value in targets.items()}
    nodes = [*projections, *body, *output]
    return graph_model(nodes, {"x": [batch, T, C]}, {"y": [batch, T, 5]}, inits)


def _attention(
    k_path: list[onnx.NodeProto],
    targets: dict[str, list[int]],
    v_path: list[onnx.NodeProto] = (),
    batch: int = B,
) -> onnx.ModelProto:
    """Attention on [B, H, T, D]: ``k_path`` turns ``kt`` into ``kT`` [B, H, D, T];
    ``v_path``, when given, turns ``vt`` into ``vt2``, which the scores then multiply."""
    body = [
        *k_path,
        *v_path,
        helper.make_node("MatMul", ["qt", "kT"], ["s"]),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vt2" if v_path else "vt"], ["o"]),
    ]
    return _model(body, targets, batch)


def _round_trip(between: str = "Transpose", rank: int = 3) -> list[onnx.NodeProto]:
    """K^T as the dynamo export writes it, Reshape targets ``merge`` (to ``rank`` axes) and
    ``unmerge``; ``between`` the two Reshapes: the Transpose of the last two axes, or another op."""
    middle = (
        helper.make_node("Transpose", ["kf"], ["kft"], perm=[*range(rank - 2), rank - 1, rank - 2])
        if between == "Transpose"
        else helper.make_node(between, ["kf"], ["kft"])
    )
    return [
        helper.make_node("Reshape", ["kt", "merge"], ["kf"]),  # [B*H, T, D]
        middle,
        helper.make_node("Reshape", ["kft", "unmerge"], ["kT"]),  # [B, H, D, T]
    ]


def _feed(batch: int = B) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).normal(size=(batch, T, C)).astype(np.float32)}


@pytest.mark.parametrize(
    ("merge", "merged"),
    [
        ([-1, T, D], [-1, T, D]),  # inferred: stays
        ([B * 2, T, D], [B * 1, T, D]),  # the batch times the kept heads
        ([1, B * 2, T, D], [1, B * 1, T, D]),  # an axis of 1 in front
    ],
)
def test_a_head_stays_a_unit_through_the_merge_with_the_batch(merge, merged):
    model = _attention(_round_trip(rank=len(merge)), {"merge": merge, "unmerge": [B, 2, D, T]})
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {"wq": (1, 2), "wk": (1, 2), "wv": (1, 2)}  # one head of two
    assert set(result.kinds.values()) == {"head"}
    for p in "qkv":
        assert not init(result.masked, f"w{p}")[:, HEAD_1].any()
        assert init(result.model, f"w{p}").shape == (C, D)
        assert init(result.model, f"split_{p}").tolist() == [B, T, 1, D]
    assert not init(result.masked, "wo")[HEAD_1].any()
    assert init(result.model, "wo").shape == (D, 5)
    assert init(result.model, "merge").tolist() == merged
    assert init(result.model, "unmerge").tolist() == [B, 1, D, T]  # the head entry
    assert init(result.model, "back").tolist() == [B, T, D]
    assert_pruned_like_masked(result, _feed())


def test_a_merge_target_two_reshapes_share_becomes_one_copy_each():
    """The dynamo export writes one target for each shape: K and V share ``[B*H, T, D]``."""
    v_path = [  # V merged with the batch and split back to [B, H, T, D]
        helper.make_node("Reshape", ["vt", "merge"], ["vf"]),
        helper.make_node("Reshape", ["vf", "unmerge_v"], ["vt2"]),
    ]
    targets = {"merge": [B * 2, T, D], "unmerge": [B, 2, D, T], "unmerge_v": [B, 2, T, D]}
    result = structured_prune(_attention(_round_trip(), targets, v_path), sparsity=0.5)

    assert result.units == {"wq": (1, 2), "wk": (1, 2), "wv": (1, 2)}
    reshapes = {n.output[0]: n.input[1] for n in result.model.graph.node if n.op_type == "Reshape"}
    assert reshapes["kf"] != reshapes["vf"]  # a copy each
    assert init(result.model, reshapes["kf"]).tolist() == [B * 1, T, D]
    assert init(result.model, reshapes["vf"]).tolist() == [B * 1, T, D]
    assert init(result.model, "unmerge_v").tolist() == [B, 1, T, D]
    assert_pruned_like_masked(result, _feed())


def test_attention_run_on_heads_merged_with_the_batch_keeps_them_units():
    """Q, K and V as [B*H, T, D] (one shared target), batched MatMuls there, split back."""
    body = [
        *(helper.make_node("Reshape", [f"{p}t", "merge"], [f"{p}f"]) for p in "qkv"),
        helper.make_node("Transpose", ["kf"], ["kft"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qf", "kft"], ["s"]),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vf"], ["of"]),
        helper.make_node("Reshape", ["of", "unmerge"], ["o"]),  # [B, H, T, D]
    ]
    model = _model(body, {"merge": [B * 2, T, D], "unmerge": [B, 2, T, D]})
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {"wq": (1, 2), "wk": (1, 2), "wv": (1, 2)}
    assert not init(result.masked, "wo")[HEAD_1].any()
    targets = {
        n.output[0]: init(result.model, n.input[1]).tolist()
        for n in result.model.graph.node
        if n.op_type == "Reshape"
    }
    assert targets["qf"] == targets["kf"] == targets["vf"] == [B * 1, T, D]  # a copy each
    assert targets["o"] == [B, 1, T, D]
    assert_pruned_like_masked(result, _feed())


def test_a_merged_axis_that_is_no_multiple_of_the_heads_blocks_them():
    """Batch 3: [B, H, T, D] = [3, 2, 3, 2] as [2, 3, 3, 2]. Index ``i`` of the 3-long axis
    holds leading index ``3 * j + i`` (``j`` on the first axis): head ``(3j + i) mod 2``
    varies with ``j``, so no head is a unit there."""
    k_path = [
        helper.make_node("Reshape", ["kt", "merge"], ["kf"]),
        helper.make_node("Reshape", ["kf", "unmerge"], ["kT0"]),  # back to [3, 2, 3, 2]
        helper.make_node("Transpose", ["kT0"], ["kT"], perm=[0, 1, 3, 2]),
    ]
    targets = {"merge": [2, 3, T, D], "unmerge": [3, 2, T, D]}
    result = structured_prune(_attention(k_path, targets, batch=3), sparsity=0.5)

    assert result.units == {}
    assert "Reshape node 'kf': it regroups the units' axis 1 ([3, 2, 3, 2] -> [2, 3, 3, 2])" in {
        b.reason for b in result.blocked
    }


def test_units_regrouped_onto_the_first_axis_are_not_a_gemm_input():
    """Conv channels [1, 4, 4] as [4, 4]: the 4 channels on axis 0, which Gemm's A multiplies
    as rows (samples); its weight's 4 input rows index the other axis, not the channels."""
    rng = np.random.default_rng(0)
    inits = {
        "wc": rng.normal(size=(4, 2, 1)) * np.array([1.0, 0.1, 1.0, 0.1])[:, None, None],
        "flat": np.array([4, 4], np.int64),
        "wg": rng.normal(size=(4, 5)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"]),
        helper.make_node("Reshape", ["c", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "wg"], ["y"]),
    ]
    model = graph_model(nodes, {"x": [1, 2, 4]}, {"y": [4, 5]}, inits)
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {}
    assert "Gemm node 'y': its units cannot be followed here" in {b.reason for b in result.blocked}
    feed = {"x": np.random.default_rng(1).normal(size=(1, 2, 4)).astype(np.float32)}
    assert_pruned_like_masked(result, feed)
