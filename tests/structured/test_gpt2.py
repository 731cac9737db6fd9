"""GPT-2 from ``transformers`` (tiny, random init), both exporters: feed-forward neurons go.

GPT-2's ``Conv1D`` layers run ``addmm`` on the batch and time axes merged: ``Reshape [1, T, C]
-> [T, C]``, ``Gemm``, ``Reshape [T, 4C] -> [1, T, 4C]``, the GELU, and the same again for the
second layer. Those Reshapes keep the unit axis and pass its units through; the one after the
first layer has its target's unit entry rewritten (the dynamo export shares one target between
layers: each gets its own copy). Before they were followed, every group was blocked and nothing
was removed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from onnxprune.structured import compact, structured_prune
from tests.helpers import run_cli
from tests.structured._common import assert_pruned_like_masked, init, params, run
from tests.structured._transformers import EXPORTERS, MARKS, SEQ, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

HIDDEN, LAYERS, HEADS = 32, 2, 4
HEADS_OF = {"gpt2": "GPT2Model", "gpt2_lm": "GPT2LMHeadModel"}


@pytest.fixture(
    scope="module",
    params=[(kind, e) for kind in HEADS_OF for e in EXPORTERS],
    ids=lambda p: "-".join(p),
)
def exported(request, tmp_path_factory):
    kind, exporter = request.param
    config = transformers.GPT2Config(
        n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=SEQ, vocab_size=VOCAB,
        attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, getattr(transformers, HEADS_OF[kind])(config))
    return export(torch, model, exporter, tmp_path_factory.mktemp(kind) / f"{exporter}.onnx")


def test_structured_prune_removes_the_feed_forward_neurons(exported) -> None:
    result = structured_prune(str(exported), sparsity=0.3)
    fc = sorted(name for name in result.units if name.endswith("mlp.c_fc.weight"))
    assert len(fc) == LAYERS
    kept = math.ceil(0.7 * 4 * HIDDEN)  # per layer: ceil((1 - sparsity) * n) of n neurons
    for name in fc:
        assert result.units[name] == (kept, 4 * HIDDEN)
        assert init(result.model, name).shape == (HIDDEN, kept)
        assert init(result.model, name.replace("weight", "bias")).shape == (kept,)
        assert init(result.model, name.replace("c_fc", "c_proj")).shape == (kept, HIDDEN)
    assert params(result.model) < params(onnx.load(str(exported)))
    assert_pruned_like_masked(result, feed())
    dense = run(onnx.load(str(exported)), feed())[0]
    assert not np.allclose(dense, run(result.masked, feed())[0])  # the neurons did something


def test_compact_cuts_the_zeroed_neurons(exported) -> None:
    pruned = structured_prune(str(exported), sparsity=0.3)
    result = compact(pruned.masked)
    assert result.removed == pruned.compaction.removed  # channels (pruned.units counts heads)
    assert set(result.removed) == {n for n, (kept, total) in pruned.units.items() if kept < total}
    assert result.params_after == pruned.compaction.params_after
    assert_pruned_like_masked(pruned, feed(1))


def test_cli_prune_structured_reports_fewer_parameters(exported, tmp_path) -> None:
    out = tmp_path / "small.onnx"
    done = run_cli(
        "prune", str(exported), "-o", str(out), "--structured", "l1", "--sparsity", "0.3"
    )
    assert done.returncode == 0, done.stderr
    before, after = (
        int(n) for n in done.stdout.split("parameters ")[1].split(";")[0].split(" -> ")
    )
    assert after == params(onnx.load(str(out))) < before


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_heads_go_when_called_as_model_ids(exporter, tmp_path) -> None:
    # The default config and call: the cache on, SDPA attention, no attention mask. The causal
    # mask is then built from Shape(key)[-2:-1] (the key is [B, H, T, D]): that read does not
    # see heads go, so the heads are units as in the exports above.
    config = transformers.GPT2Config(
        n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=SEQ, vocab_size=VOCAB
    )
    model = randomize(torch, transformers.GPT2LMHeadModel(config))
    path = export(torch, model, exporter, tmp_path / "lm.onnx", use_cache=True, mask=False)
    result = structured_prune(str(path), sparsity=0.3)
    attention = sorted(name for name in result.units if name.endswith("attn.c_attn.weight"))
    assert [result.units[name] for name in attention] == [(3, 4)] * LAYERS  # 3 of 4 heads
    assert_pruned_like_masked(result, feed())
