"""ALBERT from ``transformers`` (tiny, random init), dynamo export: its one shared layer stays.

ALBERT applies one layer at every depth. The dynamo exporter reads its attention weights from
one initializer per weight, and writes its feed-forward weights once per use, as equal
initializers (``structured._copies.stored_twice``): all are shared, so structured pruning
removes nothing, as from the TorchScript export, which reads one tensor each. Before, each
copy of the feed-forward layer lost other neurons: two layers made of one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.structured import structured_prune
from tests.structured._transformers import MARKS, VOCAB, export, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS


def test_the_shared_layer_is_left_whole(tmp_path) -> None:
    config = transformers.AlbertConfig(
        embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=16,
        attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, transformers.AlbertModel(config))
    dense = onnx.load(str(export(torch, model, "dynamo", tmp_path / "albert.onnx")))
    values = {t.name: numpy_helper.to_array(t) for t in dense.graph.initializer}
    ffn = [n for n, v in values.items() if v.shape == (32, 64)]
    assert len(ffn) == 2 and np.array_equal(*(values[n] for n in ffn))  # one weight, twice
    result = structured_prune(dense, sparsity=0.3)
    assert result.groups_removed == 0 and result.units == {}
    assert all(" shared by " in b.reason for b in result.blocked)
    after = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    assert all(np.array_equal(after[n], values[n]) for n in ffn)
