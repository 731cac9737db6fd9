"""Constants that vary along the heads and other axes: T5's relative position bias.

T5 adds a position bias ``[1, H, T, T]`` to the attention scores of every layer (the dynamo
exporter folds it into one initializer both layers read, the TorchScript export gathers it from
a bucket table ``[buckets, H]`` at run time; Swin's is one per layer). Each head has a map of
its own, sliced with the heads (``structured.ops.elementwise``), or a column of the table
(``structured.ops.picking``); a map several layers read ties their heads, head ``h`` going from
all of them or from none.

Two attention layers built by hand, x [1, T, C] -> y [1, T, C] (C = 4, T = 3, H = 4 heads of
D = 2): y0 from x, y1 from y0, y = y0 + y1 (the width C reaches the output and stays). Every
Q, K and V column of a head has one magnitude (random signs): layer 1 heads 1.0, 0.1, 2.0,
3.0, layer 2 2.0, 0.2, 1.0, 3.0 (over 4). At sparsity 0.3 each layer keeps ceil(0.7 * 4) = 3
heads; head 1, the lowest in both, goes.
The reference is numpy attention over heads 0, 2 and 3 of the dense weights.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_close, assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model

C, T, H, D = 4, 3, 4, 2
MAGS = ([1.0, 0.1, 2.0, 3.0], [2.0, 0.2, 1.0, 3.0])
RNG = np.random.default_rng(0)
X = RNG.normal(size=(1, T, C)).astype(np.float32)
MAPS = RNG.normal(size=(2, 1, H, T, T))


def _weights(layer: int) -> dict[str, np.ndarray]:
    columns = np.repeat(MAGS[layer], D) / 4  # scores of a few units: a smooth softmax
    signed = {p: RNG.choice([-1.0, 1.0], size=(C, H * D)) * columns for p in "qkv"}
    return {f"w{p}{layer}": w for p, w in signed.items()} | {
        f"wo{layer}": RNG.normal(size=(H * D, C)) / 4
    }


WEIGHTS = _weights(0) | _weights(1)


def _layer(i: int, x: str, bias: str) -> list[onnx.NodeProto]:
    """Attention layer ``i`` from ``x`` to ``y{i}``, its scores plus ``bias``."""

    def heads(p: str) -> list[onnx.NodeProto]:
        return [
            helper.make_node("MatMul", [x, f"w{p}{i}"], [f"{p}{i}"]),
            helper.make_node("Reshape", [f"{p}{i}", "split"], [f"{p}h{i}"]),
            helper.make_node("Transpose", [f"{p}h{i}"], [f"{p}t{i}"], perm=[0, 2, 1, 3]),
        ]

    return [
        *heads("q"),
        *heads("k"),
        *heads("v"),
        helper.make_node("Transpose", [f"kt{i}"], [f"kT{i}"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", [f"qt{i}", f"kT{i}"], [f"s{i}"]),
        helper.make_node("Add", [f"s{i}", bias], [f"sb{i}"]),
        helper.make_node("Softmax", [f"sb{i}"], [f"p{i}"], axis=-1),
        helper.make_node("MatMul", [f"p{i}", f"vt{i}"], [f"a{i}"]),
        helper.make_node("Transpose", [f"a{i}"], [f"at{i}"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", [f"at{i}", "merge"], [f"m{i}"]),
        helper.make_node("MatMul", [f"m{i}", f"wo{i}"], [f"y{i}"]),
    ]


BUCKETS = RNG.integers(0, 5, size=(T, T))
TABLE = RNG.normal(size=(5, H))


def _from_table() -> list[onnx.NodeProto]:
    """T5's computed bias: rows of a bucket table [5, H] -> [T, T, H] -> pb [1, H, T, T]."""
    return [
        helper.make_node("Gather", ["table", "buckets"], ["rows"], name="bias"),
        helper.make_node("Transpose", ["rows"], ["per_head"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["per_head", "zero"], ["pb"]),
    ]


def _model(shared: bool, table: bool = False) -> onnx.ModelProto:
    biases = ("pb", "pb") if shared else ("pb0", "pb1")
    nodes = [*_layer(0, "x", biases[0]), *_layer(1, "y0", biases[1])]
    if table:
        nodes = [*_from_table(), *nodes]
    nodes.append(helper.make_node("Add", ["y0", "y1"], ["y"]))  # the width reaches the output
    maps = {"pb": MAPS[0]} if shared else {"pb0": MAPS[0], "pb1": MAPS[1]}
    shapes = {"split": [1, T, H, D], "merge": [1, T, H * D]}
    if table:
        maps = {"table": TABLE}
        shapes |= {"buckets": BUCKETS, "zero": [0]}
    ints = {k: np.array(v, np.int64) for k, v in shapes.items()}
    return graph_model(nodes, {"x": [1, T, C]}, {"y": [1, T, C]}, WEIGHTS | maps | ints)


def _attention(x: np.ndarray, i: int, bias: np.ndarray, kept: list[int]) -> np.ndarray:
    q, k, v = ((x @ WEIGHTS[f"w{p}{i}"]).reshape(T, H, D).transpose(1, 0, 2)[kept] for p in "qkv")
    s = q @ k.transpose(0, 2, 1) + bias[0, kept]
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    a = (p / p.sum(axis=-1, keepdims=True)) @ v  # [heads, T, D]
    rows = np.concatenate([np.arange(h * D, (h + 1) * D) for h in kept])
    return a.transpose(1, 0, 2).reshape(T, -1) @ WEIGHTS[f"wo{i}"][rows]


def _reference(shared: bool, kept: list[int], bias: np.ndarray | None = None) -> np.ndarray:
    maps = (MAPS[0], MAPS[0]) if shared else MAPS
    maps = maps if bias is None else (bias, bias)
    y0 = _attention(X[0].astype(np.float64), 0, maps[0], kept)
    return (y0 + _attention(y0, 1, maps[1], kept))[None]


def test_a_map_both_layers_read_ties_their_heads_and_is_stored_once() -> None:
    model = _model(shared=True)
    assert_close([_reference(True, list(range(H)))], run(model, {"x": X}))
    result = structured_prune(model, sparsity=0.3)
    assert_pruned_like_masked(result, {"x": X})
    assert [result.units[f"wq{i}"] for i in (0, 1)] == [(3, 4)] * 2
    assert_close([_reference(True, [0, 2, 3])], run(result.model, {"x": X}))
    maps = [t for t in result.model.graph.initializer if t.name.startswith("pb")]
    assert [(t.name, list(t.dims)) for t in maps] == [("pb", [1, 3, T, T])]


def test_a_map_of_its_own_is_sliced_with_its_layer() -> None:
    model = _model(shared=False)
    result = structured_prune(model, sparsity=0.3)
    assert_pruned_like_masked(result, {"x": X})
    assert_close([_reference(False, [0, 2, 3])], run(result.model, {"x": X}))
    assert [init(result.model, f"pb{i}").shape for i in (0, 1)] == [(1, 3, T, T)] * 2


def test_a_map_computed_from_a_bucket_table_loses_the_heads_columns() -> None:
    # The TorchScript export of T5 gathers the bias from its table at run time: the table's
    # column h is head h's, in both layers.
    model = _model(shared=True, table=True)
    bias = np.moveaxis(TABLE[BUCKETS], -1, 0)[None]  # [1, H, T, T]
    assert_close([_reference(True, list(range(H)), bias)], run(model, {"x": X}))
    result = structured_prune(model, sparsity=0.3)
    assert_pruned_like_masked(result, {"x": X})
    assert [result.units[f"wq{i}"] for i in (0, 1)] == [(3, 4)] * 2
    assert_close([_reference(True, [0, 2, 3], bias)], run(result.model, {"x": X}))
    assert np.array_equal(init(result.model, "table"), TABLE[:, [0, 2, 3]].astype(np.float32))
