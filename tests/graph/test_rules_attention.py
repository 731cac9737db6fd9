"""ONNX Runtime's fused attention ops: heads mix within themselves only, values carry the signal.

Models from tests/attention_models.py; the dead entries are worked out by hand in each test.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxprune
from onnxprune.graph.build import build_graph
from onnxprune.graph.shapes import infer_shapes
from tests import attention_models as am
from tests.helpers import zero_inactive

LEVELS = ["channel", "exact"]


def _rows(model: onnx.ModelProto, level: str) -> dict[str, tuple[int, int, int]]:
    """(params, zeros, active) per weight."""
    report = onnxprune.analyze(model, level=level)
    return {row.name: (row.params, row.zeros, row.active) for row in report.layers}


def test_shapes_run_through_the_contrib_ops():
    # onnx's inference knows none of them: Attention [2, 6, 8] (V of the fused [8, 24] weight),
    # SkipLayerNormalization and FastGelu keep their input's shape.
    shapes = infer_shapes(am.fused())
    assert shapes["a"] == (2, am.T, 8)
    assert shapes["n"] == (2, am.T, 8)
    assert shapes["g"] == (2, am.T, 6)
    assert shapes["y"] == (2, am.T, 8)
    assert infer_shapes(am.split("GroupQueryAttention", heads=4, kv=2))["a"] == (1, am.T, 32)


def test_shapes_run_through_a_float16_model():
    # The attention output is given to onnx's inference typed as the attention's input: a
    # float32 hint would stop inference at the next float16 MatMul.
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(am.fused())
    converted.convert_float_to_float16(keep_io_types=True)  # as the optimizer's users do
    shapes = infer_shapes(converted.model)
    assert shapes["p"] == (2, am.T, 8)
    assert shapes["g"] == (2, am.T, 6)


def test_the_optimizers_model_without_the_contrib_opset_still_has_shapes():
    model = am.fused()
    del model.opset_import[1]  # onnxruntime.transformers.optimizer leaves it to its save()
    assert infer_shapes(model)["y"] == (2, am.T, 8)


@pytest.mark.parametrize("level", LEVELS)
def test_a_head_without_values_leaves_its_output_projection_rows_dead(level):
    # Head 1 (channels 4..7) has no value columns (qkv columns 20..23): its outputs are zero
    # whatever its queries, keys and the mask (reached from the inputs), so rows 4..7 of wo
    # (4 x 8 entries) are inactive. Its Q and K columns stay active: they steer the head,
    # whose channels the output needs. FFN neuron 2 has no input weights: row 2 of w2 (8).
    model = am.fused(zero=[("qkv", slice(20, 24)), ("w1", 2)])
    rows = _rows(model, level)
    assert rows["qkv"] == (192, 32, 160)
    assert rows["wo"] == (64, 0, 32)
    assert rows["w1"] == (48, 8, 40)
    assert rows["w2"] == (48, 0, 40)
    assert onnxprune.analyze(model, level=level).fallbacks == ()


BIASES = [(name, slice(None)) for name in ("qkv_bias", "bo", "beta", "b1")]
"""A unit with a bias but no input path holds that constant, and the weights reading it count
as inactive (compaction folds it into the next bias): with biases zero, zeroing is exact."""


@pytest.mark.parametrize("level", LEVELS)
def test_zeroing_what_is_inactive_leaves_the_outputs_unchanged(level):
    model = am.fused(zero=[("qkv", slice(20, 24)), *BIASES])
    model = onnxprune.prune(model, sparsity=0.8).model
    zeroed, count = zero_inactive(model, level)
    assert count > 0
    feeds = am.fused_feeds()
    np.testing.assert_allclose(am.run(zeroed, feeds)[0], am.run(model, feeds)[0], atol=1e-5)


@pytest.mark.parametrize("level", LEVELS)
def test_multi_head_attention_reads_values_channel_by_channel(level):
    # Head 1's value columns (8..15 of wv) are zero: rows 8..15 of wo (8 x 16) are inactive
    # (the bias is zero, see BIASES).
    model = am.split(zero=[("wv", slice(8, 16)), ("bias", slice(None))])
    rows = _rows(model, level)
    assert rows["wv"] == (256, 128, 128)
    assert rows["wo"] == (256, 0, 128)
    assert rows["wq"] == rows["wk"] == (256, 0, 256)
    zeroed, count = zero_inactive(model, level)
    feeds = am.split_feeds(model)
    assert count == 128
    np.testing.assert_allclose(am.run(zeroed, feeds)[0], am.run(model, feeds)[0], atol=1e-5)


@pytest.mark.parametrize("level", LEVELS)
def test_a_key_value_head_without_values_silences_its_query_heads(level):
    # 4 query heads share 2 K/V heads; K/V head 1 (columns 8..15 of wv) is zero, so query
    # heads 2 and 3 (channels 16..31) output zeros: rows 16..31 of wo (16 x 16) are inactive.
    model = am.split("GroupQueryAttention", heads=4, kv=2, zero=[("wv", slice(8, 16))])
    rows = _rows(model, level)
    assert rows["wo"] == (512, 0, 256)
    assert rows["wq"] == (512, 0, 512)
    zeroed, count = zero_inactive(model, level)
    feeds = am.split_feeds(model)
    np.testing.assert_allclose(am.run(zeroed, feeds)[0], am.run(model, feeds)[0], atol=1e-5)
    assert count == 256


@pytest.mark.parametrize("level", LEVELS)
def test_packed_grouped_query_attention_reads_each_part(level):
    # wqkv [16, 64]: Q columns 0..31 (4 heads), K 32..47 and V 48..63 (2 K/V heads of 8).
    # K/V head 1's values (columns 56..63) are zero: query heads 2 and 3 output zeros, and
    # rows 16..31 of wo (16 x 16) are inactive.
    model = am.split(
        "GroupQueryAttention", heads=4, kv=2, packed=True, zero=[("wqkv", slice(56, 64))]
    )
    rows = _rows(model, level)
    assert rows["wqkv"] == (1024, 128, 896)
    assert rows["wo"] == (512, 0, 256)
    zeroed, count = zero_inactive(model, level)
    feeds = am.split_feeds(model)
    np.testing.assert_allclose(am.run(zeroed, feeds)[0], am.run(model, feeds)[0], atol=1e-5)
    assert count == 256


@pytest.mark.parametrize("level", LEVELS)
def test_a_rotary_embedding_mixes_channels_within_a_head_only(level):
    # Q, K and V are rotated by position, in pairs within each head of 8: head 1's values
    # (columns 8..15 of wv) are zero, and stay zero through their rotation, so rows 8..15 of
    # wo (8 x 16) are inactive; head 0's channels, rotated among themselves, all carry signal.
    model = am.split(rotary="qkv", zero=[("wv", slice(8, 16)), ("bias", slice(None))])
    rows = _rows(model, level)
    assert rows["wo"] == (256, 0, 128)
    assert rows["wq"] == (256, 0, 256)
    assert onnxprune.analyze(model, level=level).fallbacks == ()
    zeroed, count = zero_inactive(model, level)
    feeds = am.split_feeds(model)
    assert count == 128
    np.testing.assert_allclose(am.run(zeroed, feeds)[0], am.run(model, feeds)[0], atol=1e-5)


def test_heads_that_do_not_divide_the_channels_mix_densely():
    model = am.fused()
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    attention.attribute[0].CopyFrom(helper.make_attribute("num_heads", 3))
    (fallback,) = build_graph(model).fallbacks
    assert fallback.op_type == "Attention"
    assert "for 3 heads" in fallback.reason


@pytest.mark.parametrize("sizes", [[8, 8], [4, 12, 8]])
def test_malformed_qkv_sizes_mix_densely(sizes):
    # two sizes, or Q and K of different sizes: no head can be followed
    model = am.fused()
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    attention.attribute.append(helper.make_attribute("qkv_hidden_sizes", sizes))
    fallbacks = [f for f in build_graph(model).fallbacks if f.op_type == "Attention"]
    assert len(fallbacks) == 1
    assert str(sizes) in fallbacks[0].reason


def test_the_fused_projection_is_a_prunable_layer_with_its_macs():
    # 2 x 6 positions, each through the [8, 24] QKV weight: 12 * 192 MACs.
    graph = build_graph(am.fused())
    (layer,) = [layer for layer in graph.layers if layer.name == "qkv"]
    assert layer.op_type == "Attention"
    assert layer.shape == (8, 24)
    report = onnxprune.analyze(am.fused())
    assert {row.name: row.macs for row in report.layers}["qkv"] == 12 * 192


def test_a_contrib_gelu_is_not_onnx_gelu():
    # com.microsoft::Gelu has the same name as ONNX's Gelu (opset 20) but a family of its own.
    from onnxprune.graph.registry import OPS

    assert OPS["Gelu"].name == "activation"
    assert OPS["com.microsoft::Gelu"].name == "biased_activation"
    model = am.fused()
    node = next(n for n in model.graph.node if n.op_type == "FastGelu")
    node.CopyFrom(helper.make_node("Gelu", ["h"], ["g"], domain="org.example"))
    (fallback,) = build_graph(model).fallbacks
    assert fallback.reason == "no transfer rule for org.example::Gelu"


def test_pruned_weights_of_the_fused_projection_are_pruned_in_place():
    pruned = onnxprune.prune(am.fused(), sparsity=0.5).model
    qkv = numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == "qkv"))
    assert 0.3 < float((qkv == 0).mean()) < 0.7
