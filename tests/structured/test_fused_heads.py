"""Q, K and V fused per head, ``[H, 3, D]``, as BLOOM's ``query_key_value`` is viewed.

BLOOM projects once to ``3C`` channels and views them as ``[B, T, H, 3, D]``: head ``h`` owns
the ``3D`` columns ``h*3D .. (h+1)*3D`` (its query, key and value, interleaved head by head,
unlike GPT-2's ``[Q | K | V]``), and ``Gather`` on axis 3 picks the query, key or value. The
Reshape splits the units into heads over two axes after the heads' (``heads.split_heads``):
before, it was read as a regroup tying channel ``d`` of every head together, and the
attention MatMuls blocked everything.

The hand-built layer: ``B = 1, T = 3, C = 4``, two heads of ``D = 2``; head 1's fused columns
and output rows are ten times smaller than head 0's, so at sparsity 0.5 head 1 goes: fused
columns 6..11 and output rows 2, 3. BLOOM itself keeps its heads (its ALiBi bias, computed
from the attention mask, is added per head), and says so.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxprune
from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init, run
from tests.structured._group_models import graph_model
from tests.structured._transformers import EXPORTERS, VOCAB, export, feed, randomize

T, C, H, D = 3, 4, 2, 2


def _fused_layer() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    small = np.repeat([1.0, 0.1], 3 * D)  # per fused column: head 0, then head 1
    inits = {
        "wqkv": rng.normal(size=(C, 3 * C)) * small,
        "wo": rng.normal(size=(C, 5)) * np.repeat([1.0, 0.1], D)[:, None],
        "split": np.array([1, T, H, 3, D], np.int64),
        "back": np.array([1, T, C], np.int64),
        **{f"i{p}": np.array(i, np.int64) for i, p in enumerate("qkv")},
    }
    nodes = [
        helper.make_node("MatMul", ["x", "wqkv"], ["f"]),
        helper.make_node("Reshape", ["f", "split"], ["fh"]),  # [1, T, H, 3, D]
        *[helper.make_node("Gather", ["fh", f"i{p}"], [p], axis=3) for p in "qkv"],
        *[helper.make_node("Transpose", [p], [f"{p}t"], perm=[0, 2, 1, 3]) for p in "qv"],
        helper.make_node("Transpose", ["k"], ["kT"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["qt", "kT"], ["s"]),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vt"], ["o"]),
        helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "back"], ["om"]),
        helper.make_node("MatMul", ["om", "wo"], ["y"]),
    ]
    return graph_model(nodes, {"x": [1, T, C]}, {"y": [1, T, 5]}, inits)


def _reference(model: onnx.ModelProto, x: np.ndarray, heads: list[int]) -> np.ndarray:
    """The layer computed in numpy with only ``heads``, from ``model``'s original weights."""
    f = (x[0] @ init(model, "wqkv")).reshape(T, H, 3, D)
    out = np.zeros((T, 5))
    for h in heads:
        q, k, v = f[:, h, 0], f[:, h, 1], f[:, h, 2]
        s = q @ k.T
        a = np.exp(s - s.max(axis=1, keepdims=True))
        out += (a / a.sum(axis=1, keepdims=True)) @ v @ init(model, "wo")[h * D : (h + 1) * D]
    return out


def test_heads_fused_per_head_go_whole() -> None:
    model = _fused_layer()
    result = structured_prune(model, sparsity=0.5)

    assert result.units == {"wqkv": (1, 2)}
    assert result.kinds == {"wqkv": "head"}
    assert not init(result.masked, "wqkv")[:, 3 * D :].any()  # head 1: fused columns 6..11
    assert init(result.masked, "wqkv")[:, : 3 * D].all()
    assert not init(result.masked, "wo")[D:].any()
    assert init(result.model, "wqkv").shape == (C, 3 * D)
    assert init(result.model, "wo").shape == (D, 5)
    assert init(result.model, "split").tolist() == [1, T, 1, 3, D]
    x = np.random.default_rng(1).normal(size=(1, T, C)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})
    got = run(result.model, {"x": x})[0][0]
    np.testing.assert_allclose(got, _reference(model, x, [0]), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module", params=EXPORTERS)
def bloom(request, tmp_path_factory):
    """BLOOM (hidden 32, 4 heads of 8, 2 layers) with head 1 of layer 0 zeroed: its 24 fused
    Q, K, V rows of ``query_key_value`` (torch's ``[out, in]`` layout) and their biases. The
    attention mask is computed in the graph, so the dynamo export folds the ALiBi bias."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4)
    model = randomize(torch, transformers.BloomModel(config))
    with torch.no_grad():
        fused = model.h[0].self_attention.query_key_value
        fused.weight[24:48] = 0
        fused.bias[24:48] = 0
    path = tmp_path_factory.mktemp("bloom") / f"{request.param}.onnx"
    return request.param, export(torch, model, request.param, path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_bloom_heads_are_units(bloom) -> None:
    """Head 1's 3 * 8 fused columns of 32 inputs are zero: 768 of its weights, none active;
    every other head has no zero (random weights)."""
    _, path = bloom
    heads = [b for b in onnxprune.analyze(str(path)).blocks if b.kind == "head"]

    assert heads and all(b.units == 4 for b in heads)
    first = heads[0].heads
    assert (first[1].zeros, first[1].active) == (768, first[1].params - 768)
    assert all(h.zeros == 0 for b in heads for h in b.heads if h is not first[1])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_bloom_heads_go_unless_alibi_is_computed(bloom) -> None:
    """TorchScript computes the ALiBi bias from the mask at run time and adds it per head: the
    heads stay, and the reason says so; the dynamo export folds it into one constant all layers
    read, sliced with the heads (the same heads go in every layer)."""
    exporter, path = bloom
    result = structured_prune(str(path), sparsity=0.5)

    fused = [w for w, kind in result.kinds.items() if kind == "head"]
    reasons = " ".join(b.reason for b in result.blocked)
    assert "varies along the units' axis without carrying them (from LayerNormalization" in reasons
    if exporter == "torchscript":
        assert not fused
        assert "self_attention/Add': input" in reasons
    else:
        assert len(fused) == 2
        assert all(result.units[w] == (2, 4) for w in fused)
        for w in fused:  # 2 heads of 3 * 8 fused columns, as the original's
            assert init(result.model, w).shape == (32, 48)
    assert sorted(k for k in result.kinds.values() if k == "neuron") == ["neuron", "neuron"]
    assert_pruned_like_masked(result, feed())
