"""Heads through a Tile: repeated along their axis (merged with the batch), or passed.

DeBERTa projects its relative-position embeddings once (``[1, P, C]``), splits the heads and
merges them ``[H, P, D]``, then repeats them for every sample with ``Tile [B, 1, 1]`` to meet
the queries ``[B*H, T, D]``: slot ``b*H + h`` holds head ``h``, as a merge with the batch does
(``interleaved``). A Tile along other axes passes the units. Before, any Tile blocked them.

The layer: queries from ``x [2, T, C]``, keys and values from a memory ``m [1, P, C]``; K is
tiled after the merge, V before the split (the batch axis, units on the last); two heads of
``D = 2``, head 1's columns and output rows ten times smaller, so at sparsity 0.5 head 1 goes.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model

B, T, P, C, H, D = 2, 3, 5, 4, 2, 2


def _layer():
    rng = np.random.default_rng(0)
    small = np.repeat([1.0, 0.1], D)
    inits = {f"w{p}": rng.normal(size=(C, C)) * small for p in "qkv"}
    inits["wo"] = rng.normal(size=(C, 5)) * small[:, None]
    shapes = {
        "split_q": [B, T, H, D], "merge_q": [B * H, T, D], "split_k": [1, P, H, D],
        "merge_k": [H, P, D], "split_v": [B, P, H, D], "merge_v": [B * H, P, D],
        "tile_k": [B, 1, 1], "tile_v": [B, 1, 1], "unmerge": [B, H, T, D], "back": [B, T, C],
    }  # fmt: skip
    inits |= {name: np.array(value, np.int64) for name, value in shapes.items()}
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["m", "wk"], ["k"]),
        helper.make_node("MatMul", ["m", "wv"], ["v0"]),
        helper.make_node("Tile", ["v0", "tile_v"], ["v"]),  # [B, P, C]: the batch axis
    ]
    for p in "qkv":
        nodes += [
            helper.make_node("Reshape", [p, f"split_{p}"], [f"{p}h"]),
            helper.make_node("Transpose", [f"{p}h"], [f"{p}t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}t", f"merge_{p}"], [f"{p}m"]),
        ]
    nodes += [
        helper.make_node("Tile", ["km", "tile_k"], ["kb"]),  # [H, P, D] -> [B*H, P, D]
        helper.make_node("Transpose", ["kb"], ["kT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qm", "kT"], ["s"]),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vm"], ["o"]),
        helper.make_node("Reshape", ["o", "unmerge"], ["oh"]),
        helper.make_node("Transpose", ["oh"], ["ot"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "back"], ["om"]),
        helper.make_node("MatMul", ["om", "wo"], ["y"]),
    ]
    return graph_model(nodes, {"x": [B, T, C], "m": [1, P, C]}, {"y": [B, T, 5]}, inits)


def _reference(model, feed: dict[str, np.ndarray], heads: list[int]) -> np.ndarray:
    """The layer in numpy with only ``heads``, from ``model``'s weights."""
    w = {p: init(model, f"w{p}") for p in "qkvo"}
    x, m = feed["x"].astype(np.float64), feed["m"][0].astype(np.float64)
    out = np.zeros((B, T, 5))
    for h in heads:
        cols = slice(h * D, (h + 1) * D)
        k, v = m @ w["k"][:, cols], m @ w["v"][:, cols]
        for b in range(B):
            s = x[b] @ w["q"][:, cols] @ k.T
            a = np.exp(s - s.max(axis=1, keepdims=True))
            out[b] += (a / a.sum(axis=1, keepdims=True)) @ v @ w["o"][cols]
    return out


def test_heads_go_through_tiles() -> None:
    model = _layer()
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {"wq": (1, 2), "wk": (1, 2), "wv": (1, 2)}
    for p in "qkv":
        assert not init(result.masked, f"w{p}")[:, D:].any()
        assert init(result.model, f"w{p}").shape == (C, D)
    assert init(result.model, "wo").shape == (D, 5)
    assert init(result.model, "merge_k").tolist() == [1, P, D]
    assert init(result.model, "tile_k").tolist() == [B, 1, 1]  # the repeats stay
    rng = np.random.default_rng(1)
    feed = {
        "x": rng.normal(size=(B, T, C)).astype(np.float32),
        "m": rng.normal(size=(1, P, C)).astype(np.float32),
    }
    assert_pruned_like_masked(result, feed)
    got = run(result.model, feed)[0]
    np.testing.assert_allclose(got, _reference(model, feed, [0]), rtol=1e-4, atol=1e-5)
