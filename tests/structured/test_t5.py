"""T5's encoder from ``transformers`` (tiny, random init), both exporters: its heads go.

T5 adds a relative position bias ``[1, H, T, T]`` to the scores of every layer, computed once:
at static shapes the dynamo exporter folds it into one initializer both layers read, the
TorchScript export gathers it from the bucket table ``[buckets, H]`` at run time. Each head's
map (or table column) is sliced with the head, and the layers reading it lose the same heads
(``structured.ops.elementwise``, ``structured.ops.picking``; by hand:
tests/structured/test_bias_maps.py). At sparsity 0.3 each layer keeps ceil(0.7 * 4) = 3 of its
4 heads; before, the Add of the bias blocked every head.
"""

from __future__ import annotations

import onnx
import pytest

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, init
from tests.structured._transformers import EXPORTERS, MARKS, SEQ, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

HIDDEN, HEADS, D = 32, 4, 8


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_heads_go_with_their_position_bias(exporter, tmp_path) -> None:
    config = transformers.T5Config(
        d_model=HIDDEN, d_kv=D, d_ff=64, num_layers=2, num_heads=HEADS, vocab_size=VOCAB,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, transformers.T5EncoderModel(config))
    path = export(torch, model, exporter, tmp_path / "t5.onnx", use_cache=None)
    dense = onnx.load(str(path))
    shape = [1, HEADS, SEQ, SEQ] if exporter == "dynamo" else [8, HEADS]  # folded, or the table
    (bias,) = (t.name for t in dense.graph.initializer if list(t.dims) == shape)
    result = structured_prune(dense, sparsity=0.3)
    assert_pruned_like_masked(result, feed())
    heads = [name for name, kind in result.kinds.items() if kind == "head"]
    assert len(heads) == 6  # Q, K and V of both layers
    assert all(result.units[name] == (HEADS - 1, HEADS) for name in heads)
    kept = [HEADS - 1 if d == HEADS else d for d in shape]  # the removed head's map or column
    assert list(init(result.model, bias).shape) == kept  # stored once, sliced
    gone = [
        {h for h in range(HEADS) if not init(result.masked, name)[:, h * D : (h + 1) * D].any()}
        for name in heads
    ]
    assert all(len(g) == 1 for g in gone) and all(g == gone[0] for g in gone)  # the same head
