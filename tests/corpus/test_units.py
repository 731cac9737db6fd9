"""Transformer results in a user's units and names: heads counted as heads, modules as labels.

The corpus configs (tests/corpus/models.py): BERT and GPT-2 have 2 layers of 4 attention heads
(hidden 16: 4 channels a head), LLaMA 2 layers of 4 query heads sharing 2 key/value heads.
"""

from __future__ import annotations

import json

import pytest

from onnxprune.structured import structured_prune
from tests.corpus.test_properties import pytestmark  # noqa: F401 - the corpus's marks
from tests.helpers import run_cli

LAYERS, HEADS = 2, 4


def test_bert_heads_are_counted_as_heads_and_named_by_module(corpus) -> None:
    entry = corpus.get("bert-torchscript")
    result = structured_prune(str(entry.path), sparsity=0.5)
    queries = [n for n in result.units if "attention/self/query" in result.labels.get(n, "")]
    assert len(queries) == LAYERS
    for name in queries:  # 4 heads a layer, 2 of them kept: counted in heads, not channels
        assert result.kinds[name] == "head"
        assert result.units[name] == (2, HEADS)
        assert result.labels[name].startswith("/model/bert/encoder/layer.")
    assert result.totals["head"] == (LAYERS * HEADS // 2, LAYERS * HEADS)
    ffn = [n for n in result.units if "intermediate/dense" in result.labels.get(n, "")]
    assert [result.kinds[n] for n in ffn] == ["neuron"] * LAYERS
    assert [result.units[n] for n in ffn] == [(16, 32)] * LAYERS  # intermediate size 32


def test_gqa_key_value_projections_count_their_own_heads(corpus) -> None:
    entry = corpus.get("llama-torchscript")
    result = structured_prune(str(entry.path), sparsity=0.5)
    by_module = {result.labels[n].split("/")[-2]: kept for n, kept in result.units.items()}
    # a K/V head goes with its 2 query heads: removing half removes 1 of 2 KV groups
    assert by_module["q_proj"] == (2, HEADS)
    assert by_module["k_proj"] == by_module["v_proj"] == (1, HEADS // 2)
    assert result.totals["head"] == (LAYERS * HEADS // 2, LAYERS * HEADS)


def test_cli_prints_heads_and_labels_and_json_keeps_the_weight_names(corpus, tmp_path) -> None:
    entry = corpus.get("gpt2-torchscript")
    out = tmp_path / "s.onnx"
    flags = ["--structured", "l1", "--sparsity", "0.25"]
    done = run_cli("prune", str(entry.path), "-o", str(out), *flags)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    lines = text.splitlines()
    c_attn = [line for line in lines if "attn/c_attn" in line]
    assert len(c_attn) == LAYERS  # the fused QKV projection: 3 of its 4 heads kept
    assert all(": kept 3 of 4 heads (25.00% removed)" in line for line in c_attn)
    assert all("(model.transformer.h." in line for line in c_attn)  # the weight beside it
    assert f"units: heads {LAYERS * HEADS} -> {LAYERS * 3}, neurons" in text
    data = json.loads(run_cli("prune", str(entry.path), "-o", str(out), *flags, "--json").stdout)
    name = "model.transformer.h.0.attn.c_attn.weight"
    assert data["units"][name] == [3, HEADS]
    assert data["kinds"][name] == "head"
    assert data["labels"][name] == "/model/transformer/h.0/attn/c_attn/Gemm"
    assert data["totals"]["head"] == [LAYERS * 3, LAYERS * HEADS]


@pytest.mark.parametrize("exporter", ["dynamo"])
def test_dynamo_weights_get_the_module_as_label(corpus, exporter) -> None:
    entry = corpus.get(f"bert-{exporter}")
    result = structured_prune(str(entry.path), sparsity=0.3)
    ffn = [n for n in result.units if n.startswith("val_")]
    assert ffn  # the exporter calls the FFN weights val_N ...
    labels = sorted(result.labels[n] for n in ffn)  # ... and records their module
    assert labels == [f"model.bert.encoder.layer.{i}.intermediate.dense" for i in range(LAYERS)]
