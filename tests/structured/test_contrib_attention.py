"""Structured pruning of ONNX Runtime's fused attention ops: whole heads go, ``num_heads`` follows.

Models from tests/attention_models.py, run on ONNX Runtime: the compacted model computes what the
masked one does, and both pass the checker.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.structured import compact, structured_prune
from tests import attention_models as am


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def _same(a: onnx.ModelProto, b: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    for x, y in zip(am.run(a, feeds), am.run(b, feeds), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def _checked(*models: onnx.ModelProto) -> None:
    for model in models:
        onnx.checker.check_model(model, full_check=True)


def test_fused_attention_loses_a_head_and_ffn_neurons():
    # 2 heads of 4 channels: half of them go, with their Q, K, V columns (12 of 24), their bias
    # entries and their rows of wo; the FFN keeps 3 of 6 neurons, FastGelu's bias with them.
    model = am.fused()
    result = structured_prune(model, sparsity=0.5)
    assert am.num_heads(result.model) == [(1,)]
    shapes = _shapes(result.model)
    assert shapes["qkv"] == (8, 12)
    assert shapes["qkv_bias"] == (12,)
    assert shapes["wo"] == (4, 8)
    assert shapes["w1"] == (8, 3)
    assert shapes["b1"] == (3,)
    assert result.units["qkv"] == (1, 2)  # heads: 1 of 2 kept
    assert result.kinds["qkv"] == "head"
    _checked(result.model, result.masked)
    _same(result.masked, result.model, am.fused_feeds())


def test_the_heads_scored_lowest_go():
    # Head 0's columns scaled down: its mean |w| is the lowest, so head 0 goes, not head 1.
    model = am.fused()
    weight = next(t for t in model.graph.initializer if t.name == "qkv")
    value = numpy_helper.to_array(weight).copy()
    value[:, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]] *= 0.01
    weight.CopyFrom(numpy_helper.from_array(value, "qkv"))
    result = structured_prune(model, sparsity=0.5)
    kept = numpy_helper.to_array(next(t for t in result.model.graph.initializer if t.name == "qkv"))
    np.testing.assert_array_equal(kept, value[:, [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]])


def test_multi_head_attention_loses_a_head_from_its_q_k_v_layers_and_bias():
    model = am.split()
    result = structured_prune(model, sparsity=0.5)
    assert am.num_heads(result.model) == [(1,)]
    shapes = _shapes(result.model)
    assert shapes["wq"] == shapes["wk"] == shapes["wv"] == (16, 8)
    assert shapes["bias"] == (24,)
    assert shapes["wo"] == (8, 16)
    _checked(result.model, result.masked)
    _same(result.masked, result.model, am.split_feeds(model))


def test_grouped_query_attention_loses_whole_key_value_groups():
    # 4 query heads over 2 K/V heads: removing half removes one K/V head and its 2 query heads.
    model = am.split("GroupQueryAttention", heads=4, kv=2)
    result = structured_prune(model, sparsity=0.5)
    assert am.num_heads(result.model) == [(2, 1)]
    shapes = _shapes(result.model)
    assert shapes["wq"] == (16, 16)
    assert shapes["wk"] == shapes["wv"] == (16, 8)
    _checked(result.model, result.masked)
    _same(result.masked, result.model, am.split_feeds(model))


def test_packed_grouped_query_attention_loses_its_groups_from_each_part():
    # One MatMul makes Q (4 heads of 8), K and V (2 heads of 8) side by side: removing a K/V
    # group takes 16 Q columns, 8 K columns and 8 V columns of wqkv [16, 64].
    model = am.split("GroupQueryAttention", heads=4, kv=2, packed=True)
    result = structured_prune(model, sparsity=0.5)
    assert am.num_heads(result.model) == [(2, 1)]
    assert _shapes(result.model)["wqkv"] == (16, 32)
    assert _shapes(result.model)["wo"] == (16, 16)
    _checked(result.model, result.masked)
    _same(result.masked, result.model, am.split_feeds(model))


def test_rotary_embeddings_keep_whole_heads_and_their_num_heads_follow():
    model = am.split(rotary="qk")
    result = structured_prune(model, sparsity=0.5)
    rotary = [n for n in result.model.graph.node if n.op_type == "RotaryEmbedding"]
    assert [a.i for n in rotary for a in n.attribute if a.name == "num_heads"] == [1, 1]
    assert am.num_heads(result.model) == [(1,)]
    assert _shapes(result.model)["wq"] == (16, 8)
    _checked(result.model, result.masked)
    _same(result.masked, result.model, am.split_feeds(model))


def test_compaction_folds_a_head_without_values_into_the_next_bias():
    # Head 1 has no value columns: it outputs its value bias, a constant that compaction adds
    # after the output projection; the head goes and the outputs stay.
    model = am.fused(zero=[("qkv", slice(20, 24))])
    result = compact(model)
    assert am.num_heads(result.model) == [(1,)]
    assert _shapes(result.model)["qkv"] == (8, 12)
    _checked(result.model)
    _same(model, result.model, am.fused_feeds())


def test_a_past_state_keeps_the_heads():
    model = am.fused()
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    attention.input.extend(["past"])
    model.graph.input.append(
        onnx.helper.make_tensor_value_info("past", onnx.TensorProto.FLOAT, [2, 2, 2, 0, 4])
    )
    result = structured_prune(model, sparsity=0.5)
    assert am.num_heads(result.model) == [(2,)]
    assert _shapes(result.model)["qkv"] == (8, 24)
    assert result.groups_removed == 3  # FFN neurons only


def test_unequal_value_heads_are_left_alone():
    sizes = [8, 8, 4]  # values narrower than queries and keys: a head's columns do not line up
    model = am.fused()
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    attention.attribute.append(onnx.helper.make_attribute("qkv_hidden_sizes", sizes))
    weight = next(t for t in model.graph.initializer if t.name == "qkv")
    value = numpy_helper.to_array(weight)[:, : sum(sizes)]
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), "qkv"))
    bias = next(t for t in model.graph.initializer if t.name == "qkv_bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias)[: sum(sizes)], "qkv_bias"))
    wo = next(t for t in model.graph.initializer if t.name == "wo")
    wo.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(wo)[: sizes[2]], "wo"))
    result = structured_prune(model, sparsity=0.5)
    assert _shapes(result.model)["qkv"] == (8, 20)
    _same(result.masked, result.model, am.fused_feeds())
