"""Text architectures nobody here wrote, one export each: heads and neurons go, outputs agree.

Each layout differs from the BERT/GPT-2/LLaMA of the other tests in how heads are stored:
GPT-NeoX fuses Q, K, V per head (``[H, 3D]``, cut by Slices) and rotates a quarter of each
head; Qwen2 has grouped-query attention with Q, K and V biases; Phi rotates half of each head
and runs attention and MLP in parallel off one LayerNorm; MobileBERT has bottlenecks around
every block, two stacked FFNs and ``NoNorm`` (a per-channel scale and shift, so the narrow
width inside the bottlenecks is prunable too). Two layers, 4 heads (Qwen2: 2 K/V heads); at
sparsity 0.5 every attention layer keeps 2 of its 4 heads and every group of neurons half of
them (``ceil(0.5 * n)``), the compacted model computes what the masked one does, and it is
smaller.
"""

from __future__ import annotations

import onnx
import pytest

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, params
from tests.structured._transformers import MARKS, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

LAYERS = 2


def _gpt_neox():
    return transformers.GPTNeoXModel(
        transformers.GPTNeoXConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16, rotary_pct=0.25,
        )
    )  # fmt: skip


def _qwen2():
    return transformers.Qwen2Model(
        transformers.Qwen2Config(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        )
    )  # fmt: skip


def _phi():
    return transformers.PhiModel(
        transformers.PhiConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
            num_attention_heads=4, partial_rotary_factor=0.5, max_position_embeddings=16,
        )
    )  # fmt: skip


def _mobilebert():
    return transformers.MobileBertModel(
        transformers.MobileBertConfig(
            vocab_size=VOCAB, hidden_size=32, embedding_size=16, num_hidden_layers=LAYERS,
            num_attention_heads=4, intermediate_size=64, intra_bottleneck_size=16,
            true_hidden_size=16, num_feedforward_networks=2, max_position_embeddings=16,
        ),
        add_pooling_layer=False,
    )  # fmt: skip


CASES = {
    # name: (model, exporter, {kind: (kept, total)} over both layers)
    "gpt_neox": (_gpt_neox, "dynamo", {"head": (4, 8), "neuron": (64, 128)}),
    "qwen2": (_qwen2, "torchscript", {"head": (4, 8), "K/V head": (2, 4), "neuron": (64, 128)}),
    "phi": (_phi, "torchscript", {"head": (4, 8), "neuron": (64, 128)}),
    # per layer 160 neurons: the two FFNs' 64 each, the bottleneck's 16 and the 16 of the
    # stream its blocks add to (NoNorm scales each channel alone: the narrow width goes too)
    "mobilebert": (_mobilebert, "dynamo", {"head": (4, 8), "neuron": (160, 320)}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    build, exporter, totals = CASES[request.param]
    model = randomize(torch, build())
    path = export(torch, model, exporter, tmp_path_factory.mktemp(request.param) / "m.onnx")
    return path, totals


def test_heads_and_neurons_go(case) -> None:
    path, totals = case
    result = structured_prune(str(path), sparsity=0.5)

    assert {kind: result.totals[kind] for kind in totals} == totals
    assert params(result.model) < params(onnx.load(str(path)))
    assert_pruned_like_masked(result, feed())
