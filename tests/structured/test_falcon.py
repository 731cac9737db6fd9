"""Falcon from ``transformers`` (tiny, random init, ``multi_query=True``), both exporters: its
query heads go, within the one K/V head they all read.

Falcon's fused projection gives H + 2 heads (``[B, T, H + 2, D]``); the query heads are a
``Slice`` of the heads axis, the K and V heads picked by ``Gather`` (TorchScript) or ``GatherND``
(dynamo), and broadcast over the query heads in both MatMuls (``structured.ops.picking``,
``heads.batched_matmul``). At sparsity 0.3 each layer keeps ceil(0.7 * 4) = 3 of its 4 query
heads and its K/V head; before, the Slice blocked every head. The model by hand:
tests/structured/test_multi_query.py.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init
from tests.structured._transformers import EXPORTERS, MARKS, SEQ, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

HIDDEN, HEADS, D = 32, 4, 8


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_query_heads_go_within_the_kv_head(exporter, tmp_path) -> None:
    config = transformers.FalconConfig(
        hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS, vocab_size=VOCAB,
        multi_query=True, new_decoder_architecture=False, attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, transformers.FalconModel(config))
    path = export(torch, model, exporter, tmp_path / f"{exporter}.onnx")
    result = structured_prune(str(path), sparsity=0.3)
    assert_pruned_like_masked(result, feed())
    fused = [name for name, kind in result.kinds.items() if kind == "head"]
    assert len(fused) == 2  # one fused projection a layer: [q0 .. q3 | k | v] columns
    for name in fused:
        assert result.units[name] == (HEADS + 1, HEADS + 2)  # counted in heads, K and V too
        w = init(result.masked, name)
        w = w if w.shape == (HIDDEN, (HEADS + 2) * D) else w.T  # dynamo stores it transposed
        zero = ~w.reshape(HIDDEN, HEADS + 2, D).any(axis=(0, 2))  # heads all zero
        assert zero.sum() == 1 and not zero[HEADS:].any()  # one query head, never K or V
    targets = [
        numpy_helper.to_array(t).tolist()
        for t in result.model.graph.initializer
        if t.data_type == onnx.TensorProto.INT64
    ]
    assert [1, SEQ, HEADS + 1, D] in targets and [1, SEQ, HEADS + 2, D] not in targets
    assert [1, SEQ, (HEADS - 1) * D] in targets
