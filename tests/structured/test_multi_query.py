"""Multi-query attention (Falcon): one K/V head for every query head, picked from fused heads.

One attention block built by hand, x [1, T, C] -> y [1, T, C] (C = 4, T = 3, head size D = 2),
as both torch exporters write Falcon's (``multi_query=True``): a fused projection ``x Wqkv`` to
H + 2 = 6 heads, ``Reshape [1, T, 6, D]``; the query heads are ``Slice [0:-2]`` on the heads
axis; the K and V heads are picked by index: ``Gather`` of [4] and [-1] on the heads axis
(TorchScript), or ``GatherND`` of [[-2]] and [[-1]] with the heads axis brought first by a
``Transpose`` (dynamo). softmax(Q K^T) V broadcasts the one K/V head over the H query heads;
heads merged back and projected by Wo.

Every query head lives within the K/V head (``structured.nests``). Every weight column of a
head has one magnitude, random signs: query heads 1.0, 0.1, 2.0, 0.2, the K and V heads 1.0.
At sparsity 0.5 the K/V head (1) and the query heads (4) are each asked for half: keeping
(1 K/V head, 2 query heads) is off by 0.5/1 + 0/4, closer than (1, 1), (1, 3) (0.75) or
(0, 0) (1.0). Query heads 1 and 3, the lowest, go: 4 query heads become 2, the Reshape to
heads gets 4 = 2 + 2, and the K and V picks move to indices 2 and 3.

The reference is numpy attention over query heads 0 and 2 of the dense weights.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_close, assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model

C, T, D, H = 4, 3, 2, 4
Q_MAG = [1.0, 0.1, 2.0, 0.2]
RNG = np.random.default_rng(0)
SIGNS = RNG.choice([-1.0, 1.0], size=(C, (H + 2) * D))
WEIGHTS = {
    "wqkv": SIGNS * np.repeat([*Q_MAG, 1.0, 1.0], D),  # [q0 | q1 | q2 | q3 | k | v] columns
    "wo": RNG.normal(size=(H * D, C)),
}
X = RNG.normal(size=(1, T, C)).astype(np.float32)


def _picks(exporter: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Nodes from the heads ``h`` [1, T, H + 2, D] to ``k`` and ``v`` [1, 1, T, D]."""
    if exporter == "torchscript":
        nodes = [
            helper.make_node("Gather", ["h", "k_at"], ["k_"], name="pick_k", axis=2),
            helper.make_node("Gather", ["h", "v_at"], ["v_"], name="pick_v", axis=2),
        ]
        ints = {"k_at": [4], "v_at": [-1]}
    else:
        nodes = [
            helper.make_node("Transpose", ["h"], ["first"], perm=[2, 0, 1, 3]),  # [6, 1, T, D]
            helper.make_node("GatherND", ["first", "k_at"], ["k_"], name="pick_k"),
            helper.make_node("GatherND", ["first", "v_at"], ["v_"], name="pick_v"),
        ]
        ints = {"k_at": [[-2]], "v_at": [[-1]]}
    perm = [0, 2, 1, 3] if exporter == "torchscript" else [1, 0, 2, 3]
    nodes += [
        helper.make_node("Transpose", ["k_"], ["k"], perm=perm),
        helper.make_node("Transpose", ["v_"], ["v"], perm=perm),
    ]
    return nodes, {k: np.array(v, np.int64) for k, v in ints.items()}


def _model(exporter: str) -> onnx.ModelProto:
    picks, ints = _picks(exporter)
    nodes = [
        helper.make_node("MatMul", ["x", "wqkv"], ["qkv"], name="qkv"),
        helper.make_node("Reshape", ["qkv", "heads_shape"], ["h"], name="to_heads"),
        helper.make_node("Slice", ["h", "zero", "minus2", "two"], ["q_"], name="pick_q"),
        helper.make_node("Transpose", ["q_"], ["q"], perm=[0, 2, 1, 3]),  # [1, H, T, D]
        *picks,
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),  # [1, 1, D, T]
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),  # [1, H, T, T]
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["a"]),  # [1, H, T, D]
        helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["at", "merged"], ["m"], name="merge"),
        helper.make_node("MatMul", ["m", "wo"], ["y"], name="out"),
    ]
    ints |= {"heads_shape": [1, T, H + 2, D], "zero": [0], "minus2": [-2], "two": [2]}
    ints |= {"merged": [1, T, H * D]}
    inits = WEIGHTS | {k: np.array(v, np.int64) for k, v in ints.items()}
    return graph_model(nodes, {"x": [1, T, C]}, {"y": [1, T, C]}, inits)


def _attention(query_heads: list[int]) -> np.ndarray:
    """numpy attention over ``query_heads``, each reading the one K/V head."""
    qkv = (X[0].astype(np.float64) @ WEIGHTS["wqkv"]).reshape(T, H + 2, D)
    k, v = qkv[:, H], qkv[:, H + 1]
    outs, rows = [], []
    for h in query_heads:
        s = qkv[:, h] @ k.T
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        outs.append((p / p.sum(axis=-1, keepdims=True)) @ v)
        rows.append(WEIGHTS["wo"][h * D : (h + 1) * D])
    return (np.concatenate(outs, axis=1) @ np.concatenate(rows))[None]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_query_heads_go_within_the_one_kv_head(exporter) -> None:
    model = _model(exporter)
    onnx.checker.check_model(model, full_check=True)
    assert_close([_attention(list(range(H)))], run(model, {"x": X}))  # the model as described
    result = structured_prune(model, sparsity=0.5)
    assert_pruned_like_masked(result, {"x": X})
    assert_close([_attention([0, 2])], run(result.model, {"x": X}))
    wqkv = init(result.model, "wqkv")
    kept = np.concatenate([np.arange(h * D, (h + 1) * D) for h in (0, 2, H, H + 1)])
    assert np.array_equal(wqkv, WEIGHTS["wqkv"][:, kept].astype(np.float32))
    assert init(result.model, "wo").shape == (2 * D, C)
    values = {t.name: numpy_helper.to_array(t).tolist() for t in result.model.graph.initializer}
    nodes = {n.name: n for n in result.model.graph.node}
    assert values[nodes["to_heads"].input[1]] == [1, T, 4, D]
    starts, ends = (values[nodes["pick_q"].input[i]] for i in (1, 2))
    assert (starts, ends) == ([0], [2])  # the two query heads left
    picked = [values[nodes[name].input[1]] for name in ("pick_k", "pick_v")]
    assert picked == ([[2], [3]] if exporter == "torchscript" else [[[2]], [[3]]])


def test_a_kv_head_picked_twice_keeps_both_picks() -> None:
    # The K and V heads picked by one Gather of [4, 5] (TorchScript's form): the picks follow
    # the kept heads, to [2, 3] once two query heads go.
    model = _model("torchscript")
    nodes = list(model.graph.node)
    model.graph.ClearField("node")
    both = helper.make_node("Gather", ["h", "kv_at"], ["kv"], name="pick_kv", axis=2)
    split = helper.make_node("Split", ["kv", "halves"], ["k_", "v_"], axis=2)
    picks = [n for n in nodes if n.name not in ("pick_k", "pick_v")]
    at = next(i for i, n in enumerate(picks) if n.output[0] == "q")
    model.graph.node.extend([*picks[: at + 1], both, split, *picks[at + 1 :]])
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([4, 5], np.int64), "kv_at"),
            numpy_helper.from_array(np.array([1, 1], np.int64), "halves"),
        ]
    )
    result = structured_prune(model, sparsity=0.5)
    assert_pruned_like_masked(result, {"x": X})
    assert_close([_attention([0, 2])], run(result.model, {"x": X}))
    values = {t.name: numpy_helper.to_array(t).tolist() for t in result.model.graph.initializer}
    gather = next(n for n in result.model.graph.node if n.name == "pick_kv")
    assert values[gather.input[1]] == [2, 3]
