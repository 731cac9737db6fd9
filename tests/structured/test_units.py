"""Dependency groups in a user's units: ONNX Runtime's fused attention heads, module names."""

from __future__ import annotations

import onnxprune
from onnxprune.structured import structured_prune
from onnxprune.structured.units import common_module
from tests import attention_models as am


def test_grouped_query_attention_counts_query_and_key_value_heads():
    # 4 query heads over 2 K/V heads: half goes, one K/V head with its 2 query heads.
    result = structured_prune(am.split("GroupQueryAttention", heads=4, kv=2), sparsity=0.5)
    assert result.units == {"wq": (2, 4), "wk": (1, 2), "wv": (1, 2)}
    assert set(result.kinds.values()) == {"head"}
    assert result.totals == {"head": (2, 4)}  # query heads


def test_packed_projection_counts_each_head_once():
    # Q (4 heads of 8), K and V (2 heads of 8) side by side in one weight: 4 heads, not 8.
    model = am.split("GroupQueryAttention", heads=4, kv=2, packed=True)
    assert structured_prune(model, sparsity=0.5).units == {"wqkv": (2, 4)}
    (block,) = [b for b in onnxprune.analyze(model, units=True).blocks if b.kind == "head"]
    assert [h.name for h in block.heads] == ["heads 0-1", "heads 2-3"]
    assert block.layers == ("wqkv", "wo")
    # per K/V group: 16 Q + 8 K + 8 V columns of 16 rows, and 16 rows of wo (16 wide)
    assert [h.params for h in block.heads] == [32 * 16 + 16 * 16] * 2


def test_fused_attention_heads_and_ffn_neurons():
    blocks = onnxprune.analyze(am.fused(), units=True).blocks
    assert [(b.kind, b.units) for b in blocks if not b.blocked] == [("head", 2), ("neuron", 6)]


def test_common_module_cuts_at_a_separator():
    assert common_module(["a.layers.1.q", "a.layers.10.q"]) == "a.layers"
    assert common_module(["/m/attn/q/MatMul", "/m/attn/k/MatMul"]) == "/m/attn"
    assert common_module(["wq", "wk"]) == "wq"  # nothing shared: the first one
    assert common_module(["x.fc"]) == "x.fc"
