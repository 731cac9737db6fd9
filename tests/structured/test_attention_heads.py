"""Attention heads as units: BERT, LLaMA with grouped-query attention, and GPT-2 from
``transformers`` (tiny, random init), exported by both torch exporters.

A head's columns of Q, K and V, their biases and its rows of the output projection are one
group (``onnxprune.structured.ops.heads``); with grouped-query attention a K/V head goes with its
``n_rep`` query heads, and query heads go in equal numbers per K/V head (``structured.nests``).
Per layer ``ceil(0.7 * n)`` of ``n`` groups stay at sparsity 0.3: 3 of 4 heads (BERT, GPT-2).
LLaMA's 4 K/V heads and 8 query heads are each asked for 30%: 3 K/V heads with 2 query heads
each are off by 0.2/4 + 0.4/8 = 0.1, closer than 4 with 1 each (0.3 + 0.2), so 3 of 4 K/V
groups stay, 6 of 8 query heads. Units are counted in heads. The masked model zeroes a removed
head's Q, K, V columns and output rows; the compacted model computes the same.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init, params
from tests.structured._transformers import EXPORTERS, MARKS, SEQ, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

D = 8  # channels per head in every model here


def _config(kind: str):
    if kind == "bert":
        return transformers.BertModel(
            transformers.BertConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                vocab_size=VOCAB, max_position_embeddings=16, attn_implementation="eager",
            )
        )  # fmt: skip
    if kind == "llama":
        return transformers.LlamaModel(
            transformers.LlamaConfig(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
                intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=16,
                attn_implementation="eager",
            )
        )  # fmt: skip
    return transformers.GPT2Model(
        transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_positions=SEQ, vocab_size=VOCAB,
            attn_implementation="eager",
        )
    )  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[(kind, e) for kind in ("bert", "llama", "gpt2") for e in EXPORTERS],
    ids=lambda p: "-".join(p),
)
def pruned(request, tmp_path_factory):
    kind, exporter = request.param
    model = randomize(torch, _config(kind))
    path = export(torch, model, exporter, tmp_path_factory.mktemp(kind) / f"{exporter}.onnx")
    result = structured_prune(str(path), sparsity=0.3)
    return (kind, exporter), onnx.load(str(path)), result


def _zero_heads(w: np.ndarray, offset: int = 0, count: int | None = None) -> list[int]:
    """The heads (D output columns each, from column ``offset``) whose columns are all zero."""
    cols = w[:, offset : offset + (count or w.shape[1] - offset)]
    heads = cols.reshape(w.shape[0], -1, D)
    return np.flatnonzero(~heads.any(axis=(0, 2))).tolist()


def _zero_columns_are_whole_heads(w: np.ndarray) -> bool:
    zero = ~w.any(axis=0)
    return bool((zero.reshape(-1, D).all(axis=1) == zero.reshape(-1, D).any(axis=1)).all())


def test_compacted_equals_masked_and_passes_the_checker(pruned) -> None:
    _, dense, result = pruned
    assert params(result.model) < params(dense)
    assert_pruned_like_masked(result, feed())


def test_a_head_is_its_q_k_v_columns_and_output_rows(pruned) -> None:
    (kind, _), _, result = pruned
    if kind == "gpt2":  # one fused c_attn per layer: [q | k | v] columns
        layers = [name for name in result.units if name.endswith("attn.c_attn.weight")]
        assert [result.units[n] for n in layers] == [(3, 4)] * 2  # 3 of 4 heads
        for name in layers:
            w = init(result.masked, name)
            gone = [_zero_heads(w, part * 32, 32) for part in range(3)]
            assert len(gone[0]) == 1 and gone[0] == gone[1] == gone[2]
            proj = init(result.masked, name.replace("c_attn", "c_proj"))
            head = gone[0][0]
            assert not proj[head * D : (head + 1) * D].any()  # its rows of the output projection
            assert init(result.model, name).shape == (32, 72)
        return
    names = list(result.units)  # in graph order: q, k, v, then the feed-forward layer(s)
    per_layer = 4 if kind == "bert" else 5  # LLaMA's feed-forward: gate and up projections
    q_k_v = [names[i : i + 3] for i in (0, per_layer)]
    for q, k, v in q_k_v:
        wq, wk, wv = (init(result.masked, n) for n in (q, k, v))
        assert all(_zero_columns_are_whole_heads(w) for w in (wq, wk, wv))
        gone_kv = _zero_heads(wk)
        assert _zero_heads(wv) == gone_kv and len(gone_kv) == 1
        if kind == "bert":
            assert _zero_heads(wq) == gone_kv
            assert [result.units[n] for n in (q, k, v)] == [(3, 4)] * 3  # heads
        else:  # K/V head j serves query heads 2j and 2j + 1 (8 query heads, 4 K/V heads)
            assert _zero_heads(wq) == [2 * gone_kv[0], 2 * gone_kv[0] + 1]
            assert [result.units[n] for n in (q, k, v)] == [(6, 8), (3, 4), (3, 4)]


def test_reshape_and_expand_targets_follow_the_kept_heads(pruned) -> None:
    (kind, exporter), _, result = pruned
    values = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    targets = {
        n.name: values[n.input[1]].tolist()
        for n in result.model.graph.node
        if n.op_type in ("Reshape", "Expand") and n.input[1] in values
    }
    if kind == "llama":  # the K/V heads repeated: [1, KV, n_rep, T, D] then [1, H, T, D]
        # TorchScript's, computed from Shape, become constants (so does its causal mask's
        # [1, 1, T, T], which holds no heads)
        expands = [v for k, v in targets.items() if "expand" in k.lower() and len(v) == 5]
        assert expands == [[1, 3, 2, SEQ, D]] * 4
        assert [1, 6, SEQ, D] in targets.values() and [1, 8, SEQ, D] not in targets.values()
    elif kind == "gpt2":  # heads merged back to [B*T, C] (dynamo), or to [B, T, C] then [-1, C]
        merged = [SEQ, 24] if exporter == "dynamo" else [-1, 24]
        assert merged in targets.values() and [SEQ, 32] not in targets.values()
        assert [1, SEQ, 72] in targets.values()  # the fused projection split back to [B, T, 3C]
    else:  # [1, T, -1, D] and [1, T, -1]: inferred, they stay
        assert [1, SEQ, -1, D] in targets.values() and [1, SEQ, -1] in targets.values()


def test_rounding_to_8_columns_keeps_the_heads_and_rounds_the_neurons(pruned) -> None:
    # Heads of D = 8 columns are a multiple of 8 columns in any number: round_to=8 keeps the
    # heads round_to=1 kept (counting heads in multiples of 8 kept all of them), and rounds each
    # feed-forward layer's neurons up to a multiple of 8 (at most all of them).
    _, dense, result = pruned
    rounded = structured_prune(dense, sparsity=0.3, round_to=8)
    assert rounded.units.keys() == result.units.keys()
    for name, (kept, total) in result.units.items():
        if result.kinds[name] in ("head", "K/V head"):
            assert rounded.units[name] == (kept, total)
        else:
            assert rounded.units[name] == (min(total, 8 * -(-kept // 8)), total)
    assert_pruned_like_masked(rounded, feed())


def _fused_ops(model: onnx.ModelProto, path: Path) -> Counter:
    """The op types of ``model`` after ONNX Runtime's CPU graph optimizations (all levels)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path)
    options.log_severity_level = 3  # the NCHWc transformer warns that the file is CPU-specific
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_onnx_runtime_fuses_the_compacted_model_as_the_dense_one(pruned, tmp_path) -> None:
    # The speedup of a compacted model rests on ONNX Runtime running it as it runs the dense one:
    # rewritten Reshape targets, sliced weights and biases must still match its fusion patterns
    # (SkipLayerNormalization, Gelu, FusedMatMul, Gemm from MatMul + Add...), node for node.
    _, dense, result = pruned
    fused = _fused_ops(dense, tmp_path / "dense.onnx")
    assert fused.keys() - {n.op_type for n in dense.graph.node}  # it did fuse something
    assert _fused_ops(result.model, tmp_path / "compacted.onnx") == fused
