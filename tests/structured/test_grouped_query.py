"""Grouped-query attention: query heads go within their K/V group, the same number from each.

One attention block built by hand, x [1, T, C] -> y [1, T, C] (C = 4, T = 3, head size D = 2):
Q = x Wq reshaped to 6 query heads, K = x Wk and V = x Wv to 2 K/V heads, each K/V head
repeated for R = 3 query heads (``Unsqueeze``, ``Expand`` to [1, 2, 3, T, D], ``Reshape`` to
[1, 6, T, D]; both Expands read one shape initializer), softmax(Q K^T) V, heads merged back and
projected by Wo. Query head h reads K/V head h // 3.

Every weight column of a head has the same magnitude, with random signs, so the l1 score of a
head (the mean |w| of its columns) is that magnitude: query heads 1.0, 0.2, 3.0 | 0.5, 2.0, 0.1,
K/V heads (Wk and Wv alike) 2.0 | 0.5.

Per layer at sparsity s the K/V heads (2) and the query heads (6) are each asked for s; the
pair (k K/V heads kept, n query heads each) closest to ((1 - s) * 2, (1 - s) * 6), errors
relative to 2 and 6, wins:

- s = 0.3, want (1.4, 4.2): (2, 2) is off by 0.6/2 + 0.2/6 = 0.33, (1, 3) by 0.2 + 0.2 = 0.4,
  so each K/V head keeps 2 query heads: the lowest of each group go, heads 1 and 5. n_rep 3 -> 2.
- s = 0.5, want (1, 3): (1, 3) is exact. The K/V head kept is the one whose score plus its
  query heads' is highest, each over its kind's mean (K/V 1.25, query 6.8 / 6): head 0 scores
  2.0 / 1.25 + 4.2 / (6.8 / 6) = 5.3, head 1 0.4 + 2.3 = 2.7, so K/V head 1 goes with query
  heads 3, 4, 5.

The reference is numpy attention over the kept query heads of the dense weights, each reading
its own K/V head: the compacted model must compute it (and equal the masked model).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxprune.structured import compact, structured_prune
from tests.structured._common import assert_close, assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model

C, T, D, KV, R = 4, 3, 2, 2, 3
H = KV * R
Q_MAG = [1.0, 0.2, 3.0, 0.5, 2.0, 0.1]
KV_MAG = [2.0, 0.5]
RNG = np.random.default_rng(0)


def _signed(magnitudes: list[float]) -> np.ndarray:
    """[C, heads * D]: head h's columns are +-magnitudes[h]."""
    signs = RNG.choice([-1.0, 1.0], size=(C, len(magnitudes) * D))
    return signs * np.repeat(magnitudes, D)


WEIGHTS = {
    "wq": _signed(Q_MAG),
    "wk": _signed(KV_MAG),
    "wv": _signed(KV_MAG),
    "wo": RNG.normal(size=(H * D, C)),
}
X = RNG.normal(size=(1, T, C)).astype(np.float32)


def block(weights: dict[str, np.ndarray] = WEIGHTS, dynamic: bool = False) -> onnx.ModelProto:
    """The attention block (see the module docstring).

    ``dynamic``: x is [batch, seq, C], and as a dynamic export does, the Expand and the Reshape
    repeating the K/V heads take their targets from ``Shape`` (``_computed_targets``); the
    other Reshapes copy the batch and sequence sizes (0).
    """
    node = helper.make_node
    nodes = [
        node("MatMul", ["x", "wq"], ["q"]),
        node("Reshape", ["q", "split_q"], ["q4"]),
        node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
    ]
    for name in ("k", "v"):  # [1, T, KV*D] -> [1, KV, T, D] -> repeated to [1, H, T, D]
        nodes += [
            node("MatMul", ["x", f"w{name}"], [name]),
            node("Reshape", [name, "split_kv"], [f"{name}4"]),
            node("Transpose", [f"{name}4"], [f"{name}h"], perm=[0, 2, 1, 3]),
            node("Unsqueeze", [f"{name}h", "axis2"], [f"{name}5"]),
            *(_computed_targets(name) if dynamic else []),
            node("Expand", [f"{name}5", f"repeat_{name}" if dynamic else "repeat"], [f"{name}x"]),
            node("Reshape", [f"{name}x", f"merge_{name}" if dynamic else "merge_kv"], [f"{name}r"]),
        ]
    nodes += [
        node("Transpose", ["kr"], ["kt"], perm=[0, 1, 3, 2]),
        node("MatMul", ["qh", "kt"], ["scores"]),
        node("Softmax", ["scores"], ["p"], axis=-1),
        node("MatMul", ["p", "vr"], ["heads"]),
        node("Transpose", ["heads"], ["heads_t"], perm=[0, 2, 1, 3]),
        node("Reshape", ["heads_t", "merge"], ["merged"]),
        node("MatMul", ["merged", "wo"], ["y"]),
    ]
    shapes = {
        "split_q": [1, T, H, D],
        "split_kv": [1, T, KV, D],
        "axis2": [2],
        "repeat": [1, KV, R, T, D],
        "merge_kv": [1, H, T, D],
        "merge": [1, T, H * D],
    }
    if dynamic:
        shapes.update(split_q=[0, 0, H, D], split_kv=[0, 0, KV, D], merge=[0, 0, H * D])
        shapes.update(r=[R], zero=[0], one=[1], two=[2], three=[3])
    inits = {**weights, **{k: np.array(v, np.int64) for k, v in shapes.items()}}
    sizes = ["batch", "seq", C] if dynamic else [1, T, C]
    return graph_model(nodes, {"x": sizes}, {"y": sizes}, inits)


def _computed_targets(name: str) -> list[onnx.NodeProto]:
    """``repeat_{name}`` = [B, KV, R, T, D] and ``merge_{name}`` = [B, KV * R, T, D], each size
    read from ``Shape({name}h)`` as the TorchScript exporter writes it."""
    node = helper.make_node
    nodes = [node("Shape", [f"{name}h"], [f"{name}_shape"])]
    for i, index in enumerate(("zero", "one", "two", "three")):
        nodes.append(node("Gather", [f"{name}_shape", index], [f"{name}_d{i}"], axis=0))
    b, kv, t, d = (f"{name}_d{i}" for i in range(4))
    nodes.append(node("Mul", [kv, "r"], [f"{name}_heads"]))
    nodes.append(node("Concat", [b, kv, "r", t, d], [f"repeat_{name}"], axis=0))
    nodes.append(node("Concat", [b, f"{name}_heads", t, d], [f"merge_{name}"], axis=0))
    return nodes


def reference(heads: list[int], weights: dict[str, np.ndarray] = WEIGHTS) -> np.ndarray:
    """Attention over query ``heads`` only, in float64, head h reading K/V head h // R."""
    x = X[0].astype(np.float64)
    y = np.zeros((T, C))
    for h in heads:
        j = h // R
        q = x @ weights["wq"][:, h * D : (h + 1) * D]
        k = x @ weights["wk"][:, j * D : (j + 1) * D]
        v = x @ weights["wv"][:, j * D : (j + 1) * D]
        s = q @ k.T
        p = np.exp(s - s.max(axis=1, keepdims=True))
        y += (p / p.sum(axis=1, keepdims=True)) @ v @ weights["wo"][h * D : (h + 1) * D]
    return y[np.newaxis]


def _zero_heads(w: np.ndarray) -> list[int]:
    """The heads whose D columns of ``w`` are all zero."""
    return np.flatnonzero(~w.reshape(C, -1, D).any(axis=(0, 2))).tolist()


def _targets(model: onnx.ModelProto) -> dict[str, list[int]]:
    """The shape input of every Reshape and Expand, by the node's output."""
    values = {t.name: numpy_helper.to_array(t).tolist() for t in model.graph.initializer}
    return {
        n.output[0]: values[n.input[1]]
        for n in model.graph.node
        if n.op_type in ("Reshape", "Expand")
    }


def test_the_block_computes_the_reference():
    assert_close([reference(list(range(H)))], run(block(), {"x": X}))


@pytest.mark.parametrize(
    ("sparsity", "gone_q", "gone_kv", "n_rep"),
    [(0.3, [1, 5], [], 2), (0.5, [3, 4, 5], [1], 3)],
)
def test_query_heads_go_the_same_number_per_group(sparsity, gone_q, gone_kv, n_rep):
    result = structured_prune(block(), sparsity=sparsity, criterion="l1")
    assert _zero_heads(init(result.masked, "wq")) == gone_q
    assert _zero_heads(init(result.masked, "wk")) == gone_kv
    assert _zero_heads(init(result.masked, "wv")) == gone_kv
    assert not init(result.masked, "wo").reshape(H, D, C)[gone_q].any()  # their output rows
    kept_q, kept_kv = H - len(gone_q), KV - len(gone_kv)
    assert kept_q == kept_kv * n_rep
    assert init(result.model, "wq").shape == (C, kept_q * D)
    assert init(result.model, "wk").shape == init(result.model, "wv").shape == (C, kept_kv * D)
    assert init(result.model, "wo").shape == (kept_q * D, C)
    targets = _targets(result.model)
    assert targets["kx"] == targets["vx"] == [1, kept_kv, n_rep, T, D]  # n_rep rewritten
    assert targets["kr"] == targets["vr"] == [1, kept_q, T, D]
    assert targets["q4"] == [1, T, kept_q, D]
    assert targets["k4"] == targets["v4"] == [1, T, kept_kv, D]
    assert targets["merged"] == [1, T, kept_q * D]
    onnx.checker.check_model(result.model, full_check=True)
    kept = [h for h in range(H) if h not in gone_q]
    assert_close([reference(kept)], run(result.model, {"x": X}))
    assert_pruned_like_masked(result, {"x": X})


def test_global_scope_keeps_equal_query_heads_per_kv_head():
    result = structured_prune(block(), sparsity=0.4, criterion="l1", scope="global")
    gone = _zero_heads(init(result.masked, "wq"))
    gone_kv = _zero_heads(init(result.masked, "wk"))
    per_group = [R - sum(h // R == j for h in gone) for j in range(KV) if j not in gone_kv]
    assert gone and len(set(per_group)) == 1
    assert all(h // R in gone_kv for h in gone) or not gone_kv  # a K/V head takes its heads
    assert_close([reference([h for h in range(H) if h not in gone])], run(result.model, {"x": X}))


@pytest.mark.parametrize(
    ("dead", "kept_q", "kept_kv"),
    [
        ([1], 6, 2),  # K/V head 1 keeps 3: head 1 must stay for head 0 to keep 3 too
        ([1, 4], 4, 2),  # one of each: n_rep 3 -> 2
        ([3, 4, 5], 3, 1),  # all of K/V head 1's query heads: it goes with them
        ([0, 1, 2], 3, 1),  # the same for K/V head 0
        ([1, 3, 4, 5], 2, 1),  # K/V head 0 left alone: its dead head 1 goes too (n_rep 2)
    ],
)
def test_compaction_removes_dead_query_heads_only_in_equal_numbers(dead, kept_q, kept_kv):
    weights = dict(WEIGHTS, wo=WEIGHTS["wo"].copy())
    weights["wo"].reshape(H, D, C)[dead] = 0  # these heads add nothing: dead
    result = compact(block(weights))
    assert init(result.model, "wq").shape == (C, kept_q * D)
    assert init(result.model, "wk").shape == (C, kept_kv * D)
    assert _targets(result.model)["kx"] == [1, kept_kv, kept_q // kept_kv, T, D]
    onnx.checker.check_model(result.model, full_check=True)
    alive = [h for h in range(H) if h not in dead]
    assert_close([reference(alive, weights)], run(result.model, {"x": X}))


def test_a_dynamic_export_with_its_dims_fixed_is_pruned_as_the_static_one():
    """Without the sizes, the ``Shape`` reading the K/V head count keeps every head; with
    ``dims`` the shape arithmetic is computed and stored as constants, and the heads go as in
    the static block (sparsity 0.5: K/V head 1 with query heads 3, 4, 5)."""
    model = block(dynamic=True)
    assert_close([reference(list(range(H)))], run(model, {"x": X}))
    kept = structured_prune(model, sparsity=0.5)
    assert _zero_heads(init(kept.masked, "wq")) == []
    assert (  # and says what would let them go
        "Shape node 'k_shape': its output depends on the number of units "
        "(symbolic input dims batch, seq: use --dim or --input-shape)"
    ) in {g.reason for g in kept.blocked}
    result = structured_prune(model, sparsity=0.5, dims={"batch": 1, "seq": T})
    assert _zero_heads(init(result.masked, "wq")) == [3, 4, 5]
    assert _zero_heads(init(result.masked, "wk")) == [1]
    targets = _targets(result.model)
    assert targets["kx"] == targets["vx"] == [1, 1, R, T, D]
    assert targets["kr"] == targets["vr"] == [1, R, T, D]
    onnx.checker.check_model(result.model, full_check=True)
    assert_close([reference([0, 1, 2])], run(result.model, {"x": X}))
    assert_pruned_like_masked(result, {"x": X})
