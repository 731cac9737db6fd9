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
    # half of the 2 K/V heads and of the 4 query heads: 1 K/V head goes with its 2 query heads
    assert by_module["q_proj"] == (2, HEADS)
    assert by_module["k_proj"] == by_module["v_proj"] == (1, HEADS // 2)
    kinds = {result.labels[n].split("/")[-2]: kind for n, kind in result.kinds.items()}
    assert (kinds["q_proj"], kinds["k_proj"], kinds["v_proj"]) == ("head", "K/V head", "K/V head")
    assert result.totals["head"] == (LAYERS * HEADS // 2, LAYERS * HEADS)  # query heads
    assert result.totals["K/V head"] == (LAYERS, LAYERS * HEADS // 2)


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
    pruned = [n for n in result.units if n.startswith("val_")]
    assert pruned  # the exporter calls the Q, K, V and FFN weights val_N ...
    labels = sorted(result.labels[n] for n in pruned)  # ... and records their module
    modules = ("attention.self.key", "attention.self.query", "attention.self.value")
    assert labels == [
        f"model.bert.encoder.layer.{i}.{module}"
        for i in range(LAYERS)
        for module in (*modules, "intermediate.dense")
    ]


MODULES = {
    "bert-torchscript": "/model/bert/encoder/layer.{}/attention",
    "gpt2-torchscript": "/model/transformer/h.{}/attn",
    "llama-torchscript": "/model/model/layers.{}/self_attn",
    "bert-dynamo": "model.bert.encoder.layer.{}.attention",  # heads merged with the batch
    "vit-dynamo": "model.vit.layers.{}.attention",
    "whisper-dynamo": "model.encoder.layers.{}.self_attn",
    "gpt2-dynamo": "model.transformer.h.{}.attn",
}
"""Each export's attention modules, by layer, as the exporter records them."""


@pytest.mark.parametrize("name", list(MODULES))
def test_analyze_reports_every_attention_head_by_module(corpus, name) -> None:
    entry = corpus.get(name)  # no flag: a model with attention gets its units table
    data = json.loads(run_cli("analyze", str(entry.path), "--json").stdout)
    attention = [b for b in data["blocks"] if b["kind"] == "head"]
    assert len(attention) == LAYERS
    assert sum(b["units"] for b in attention) == LAYERS * HEADS  # num_attention_heads x layers
    assert sum(h["heads"] for b in attention for h in b["heads"]) == LAYERS * HEADS
    assert [b["module"] for b in attention] == [MODULES[name].format(i) for i in range(LAYERS)]
    ffn = [b for b in data["blocks"] if b["kind"] == "neuron" and b["blocked"] == 0]
    assert len(ffn) >= LAYERS  # the FFNs' hidden neurons, free to go


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_analyze_reports_recurrent_hidden_units_by_default(corpus, kind) -> None:
    # 2 bidirectional layers of 8 hidden units (tests/corpus/models.py), then a head of 3.
    entry = corpus.get(kind)
    data = json.loads(run_cli("analyze", str(entry.path), "--json").stdout)
    blocks = [(b["module"], b["kind"], b["units"]) for b in data["blocks"]]
    op = kind.upper()
    assert blocks == [
        (f"/rnn/{op}", "hidden unit", 8),
        (f"/rnn/{op}_1", "hidden unit", 8),
        ("/head/MatMul", "neuron", 3),
    ]
    plain = json.loads(run_cli("analyze", str(entry.path), "--no-units", "--json").stdout)
    assert plain["blocks"] == []
    assert plain["layers"] == data["layers"]


def test_analyze_names_a_zeroed_head_dead(corpus, tmp_path) -> None:
    # BERT's layer 0 head 2: columns 8..11 of Q, K, V and rows 8..11 of the output projection.
    import onnx
    from onnx import numpy_helper

    entry = corpus.get("bert-torchscript")
    model = onnx.load(str(entry.path))
    report = json.loads(run_cli("analyze", str(entry.path), "--units", "--json").stdout)
    by_label = {layer["label"]: layer["name"] for layer in report["layers"]}
    prefix = "/model/bert/encoder/layer.0/attention/"
    q, k, v = (by_label[f"{prefix}self/{p}/MatMul"] for p in ("query", "key", "value"))
    o = by_label[f"{prefix}output/dense/MatMul"]
    for init in model.graph.initializer:
        if init.name in (q, k, v, o):
            w = numpy_helper.to_array(init).copy()  # [in, out]
            if init.name == o:
                w[8:12, :] = 0
            else:
                w[:, 8:12] = 0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    path = tmp_path / "zeroed.onnx"
    onnx.save(model, str(path))
    done = run_cli("analyze", str(path), "--units")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    start = rows.index(next(r for r in rows if r.startswith(prefix[:-1] + " ")))
    assert rows[start].split()[1:4] == ["heads", "4", "1"]  # 4 heads, 1 dead
    heads = [r.split() for r in rows[start + 1 : start + 5]]
    assert [h[:2] for h in heads] == [["head", str(i)] for i in range(4)]
    assert heads[2][-2:] == ["100.00%", "100.00%"]  # 3 x 16 x 4 + 4 x 16 weights, all zero
    assert heads[2][2] == str(3 * 16 * 4 + 4 * 16)
    assert all(h[-2] == "0.00%" for i, h in enumerate(heads) if i != 2)


def test_dynamo_heads_merged_with_the_batch_are_counted_as_heads(corpus) -> None:
    """The dynamo export's SDPA transposes K through [B*H, T, D] (structured/ops/interleaved.py):
    its heads are removed and counted as the TorchScript export's are."""
    entry = corpus.get("bert-dynamo")
    result = structured_prune(str(entry.path), sparsity=0.5)
    by_label = {result.labels[n]: (result.kinds[n], result.units[n]) for n in result.units}
    for i in range(LAYERS):
        for projection in ("query", "key", "value"):
            label = f"model.bert.encoder.layer.{i}.attention.self.{projection}"
            assert by_label[label] == ("head", (2, HEADS))
    assert result.totals["head"] == (LAYERS * HEADS // 2, LAYERS * HEADS)


def test_analyze_names_the_layer_norms_by_module(corpus) -> None:
    entry = corpus.get("bert-dynamo")
    data = json.loads(run_cli("analyze", str(entry.path), "--units", "--json").stdout)
    norms = [b["module"] for b in data["blocks"] if b["kind"] == "norm channel"]
    # the embeddings' LayerNorm, then two a layer (after attention, after the FFN)
    assert norms == [
        "model.bert.embeddings.LayerNorm",
        *(f"model.bert.encoder.layer.{i}.{part}.LayerNorm" for i in range(LAYERS)
          for part in ("attention.output", "output")),
    ]  # fmt: skip


def test_compact_names_a_dead_dynamo_head_by_module_and_counts_it_as_a_head(corpus, tmp_path):
    # BERT's layer 0, head 2: rows 8..11 of the attention's output projection (the dynamo export
    # stores it [in, out] as val_N) zeroed, so nothing reads the head's Q, K, V columns.
    import onnx
    from onnx import numpy_helper

    entry = corpus.get("bert-dynamo")
    report = json.loads(run_cli("analyze", str(entry.path), "--json").stdout)
    by_label = {layer["label"]: layer["name"] for layer in report["layers"]}
    out_proj = by_label["model.bert.encoder.layer.0.attention.output.dense"]
    assert out_proj.startswith("val_")
    model = onnx.load(str(entry.path))
    for init in model.graph.initializer:
        if init.name == out_proj:
            w = numpy_helper.to_array(init).copy()
            w[8:12, :] = 0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    path = tmp_path / "dead_head.onnx"
    onnx.save(model, str(path))
    done = run_cli("compact", str(path), "-o", str(tmp_path / "c.onnx"))
    assert done.returncode == 0, done.stderr
    prefix = "model.bert.encoder.layer.0.attention.self."
    lines = [line for line in done.stdout.splitlines() if ": removed " in line]
    assert [line.split(" (val_")[0] for line in lines] == [
        prefix + p for p in ("query", "key", "value")
    ]
    assert all(line.endswith("): removed 1 of 4 heads") for line in lines)
    assert f"units: heads {LAYERS * HEADS} -> {LAYERS * HEADS - 1}, neurons" in done.stdout
    data = json.loads(
        run_cli("compact", str(path), "-o", str(tmp_path / "c.onnx"), "--json").stdout
    )
    assert [data["labels"][n] for n in data["removed"]] == [
        prefix + p for p in ("query", "key", "value")
    ]
    assert set(data["kinds"].values()) == {"head"}
    assert list(data["units"].values()) == [[HEADS - 1, HEADS]] * 3
    assert data["totals"]["head"] == [LAYERS * HEADS - 1, LAYERS * HEADS]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("llama-torchscript", "/model/model/{}/Mul_1"),
        ("llama-dynamo", "model.model.{}"),
    ],
)
def test_analyze_names_llamas_rms_norms_by_module(corpus, name, module) -> None:
    # LlamaRMSNorm is exported in plain ops (Pow, ReduceMean, Sqrt, a reciprocal, Mul by the
    # scale): two a layer (before attention, before the MLP) and the final one, 16 channels.
    entry = corpus.get(name)
    data = json.loads(run_cli("analyze", str(entry.path), "--json").stdout)
    norms = [(b["module"], b["units"]) for b in data["blocks"] if b["kind"] == "norm channel"]
    sep = "/" if name.endswith("torchscript") else "."  # /layers.0/input_layernorm/Mul_1
    parts = [f"layers.{i}{sep}{p}" for i in range(LAYERS)
             for p in ("input_layernorm", "post_attention_layernorm")]  # fmt: skip
    assert norms == [(module.format(p), 16) for p in [*parts, "norm"]]
