"""Properties every corpus model must have (tests/corpus/store.py): foreign graphs as users export
them, checked against ONNX Runtime.

1. Soundness: zeroing every weight entry the analysis calls inactive (channel level, and exact:
   the corpus has static shapes) leaves every output unchanged, biases zero (with biases, an
   entry reading a unit that only carries its bias is inactive, and zeroing it is exact once
   the constant is folded into the next bias: compaction, property 2).
2. Unstructured pruning (50%, and 90% where dead units appear) then compaction computes what the
   pruned model computes.
3. Structured pruning (l1, 30%) computes what its masked model computes, and removes something:
   from the transformers, attention heads among it.
4. Every model onnxprune writes passes ``onnx.checker.check_model(full_check=True)``.
5. No command crashes on a corpus model: analyze (also ``--exact``), prune (also
   ``--structured``) and compact exit 0, or 2 with one line saying why.
6. With its symbolic dimensions fixed by name (``dims``), a dynamic export is analysed as its
   static twin; the properties above use them too.
7. An effective target gives what the full search gives (bisection, masks selected afresh, whole
   analyses: tests/pruners/test_effective_search.py), whether each step is analysed
   incrementally (the transformers) or whole (the LSTM's recurrent layers).

Every corpus model has every property. A property that waits on a part of issue 15 still being
built marks its cases ``xfail(strict=True)`` with the part's number, so that they turn into
failures the moment the part lands, and its owner removes the mark.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.structured import compact, structured_prune
from tests.corpus.store import CASES, TRANSFORMERS
from tests.helpers import zero_inactive
from tests.pruners.test_effective_search import same_as_reference

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxscript")  # the dynamo exporter's dependency
ort = pytest.importorskip("onnxruntime")

pytestmark = [
    pytest.mark.slow,  # torch exports
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def cases(names=CASES) -> list:
    """Corpus models (every one by default) as parameters, named."""
    return [pytest.param(name, id=name) for name in names]


def outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` on ONNX Runtime's CPU provider."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def assert_same_outputs(entry, expected: onnx.ModelProto, got: onnx.ModelProto) -> None:
    """``got`` computes what ``expected`` does on every input set of ``entry`` (relative 1e-5 of
    the largest output, at least 1e-5 absolute)."""
    for feeds in entry.feeds:
        want, have = outputs(expected, feeds), outputs(got, feeds)
        assert len(want) == len(have)
        for a, b in zip(want, have, strict=True):
            assert a.shape == b.shape
            scale = max(1.0, float(np.abs(a).max()))
            assert float(np.abs(a - b).max()) <= 1e-5 * scale


def assert_checked(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("name", cases())
def test_unstructured_prune_leaves_embedding_tables_alone(corpus, name):
    """An embedding table is no prunable weight, and stays whole where the LM head is tied to it
    (both GPT-2 exports store the head as a copy of their own here: torch 2.13 folds the
    dynamo export's transposed table into a new initializer)."""
    entry = corpus.get(name)
    tables = {n.input[0] for n in entry.model.graph.node if n.op_type == "Gather"}
    before = {t.name: t for t in entry.model.graph.initializer if t.name in tables}
    pruned = onnxprune.prune(entry.model, sparsity=0.5).model
    after = {t.name: t for t in pruned.graph.initializer if t.name in tables}
    assert after == before


def weights(model: onnx.ModelProto) -> int:
    """How many floating-point values the initializers of ``model`` hold."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in floats)


def without_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its additive constants zero: every 1-D float initializer that an ``Add``
    reads, or that a ``Gemm``, ``Conv`` or ``LayerNormalization`` reads as its bias."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    biases = set()
    for node in out.graph.node:
        if node.op_type == "Add":
            biases.update(node.input)
        elif node.op_type in ("Gemm", "Conv", "LayerNormalization") and len(node.input) > 2:
            biases.add(node.input[2])
    for tensor in out.graph.initializer:
        bias = tensor.name in biases and len(tensor.dims) == 1
        if bias and tensor.data_type == onnx.TensorProto.FLOAT:
            zero = np.zeros(tuple(tensor.dims), np.float32)
            tensor.CopyFrom(numpy_helper.from_array(zero, tensor.name))
    return out


NOTHING_DEAD_AT_90 = {"lstm", "gru", "lstm-dynamo", "gru-dynamo"}
"""Models where a 90% magnitude prune leaves no entry the analysis calls inactive (every hidden
unit of the recurrent nets keeps some path)."""


@pytest.mark.parametrize("level", ["channel", "exact"])
@pytest.mark.parametrize("name", cases())
def test_zeroing_what_analyze_calls_inactive_leaves_the_outputs_unchanged(corpus, name, level):
    """A unit with no input path emits its bias, a constant, and its outgoing weights count as
    inactive (README, "Choices the paper leaves open"): zeroing them is exact once the constant
    is folded into the next bias, which ``compact`` does (tested below). Here the biases are
    zero, so such a unit emits 0 and zeroing alone must change nothing."""
    entry = corpus.get(name)
    pruned = onnxprune.prune(without_biases(entry.model), sparsity=0.9).model  # dead paths
    zeroed, count = zero_inactive(pruned, level, entry.dims)
    assert_same_outputs(entry, pruned, zeroed)
    assert (count > 0) == (name not in NOTHING_DEAD_AT_90)


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
@pytest.mark.parametrize("name", cases())
def test_unstructured_prune_then_compact_equals_the_pruned_model(corpus, name, sparsity):
    entry = corpus.get(name)
    pruned = onnxprune.prune(entry.model, sparsity=sparsity).model
    assert_checked(pruned)
    compacted = compact(pruned).model
    assert_checked(compacted)
    assert_same_outputs(entry, pruned, compacted)


@pytest.mark.parametrize("name", cases())
def test_structured_prune_equals_its_masked_model_and_removes_something(corpus, name):
    entry = corpus.get(name)
    result = structured_prune(entry.model, sparsity=0.3, criterion="l1", dims=entry.dims)
    assert_checked(result.model)
    assert_checked(result.masked)
    assert_same_outputs(entry, result.masked, result.model)
    assert result.groups_removed > 0
    assert weights(result.model) < weights(entry.model)


def attention_heads(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> int:
    """The heads of every MatMul of two activations with a rank-4 output (attention scores,
    and scores times values, [B, heads, T, *]), added up: axis 1 of their outputs as ONNX
    Runtime computes them on ``feeds``."""
    weights = {t.name for t in model.graph.initializer}
    weights |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    products = [
        n.output[0]
        for n in model.graph.node
        if n.op_type == "MatMul" and not weights & set(n.input)
    ]
    probed = copy.deepcopy(model)
    del probed.graph.output[:]
    probed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(p) for p in products)
    return sum(y.shape[1] for y in outputs(probed, feeds) if y.ndim == 4)


TRANSFORMER_CASES = [name for name in CASES if name.split("-")[0] in TRANSFORMERS]


@pytest.mark.parametrize("name", cases(TRANSFORMER_CASES))
def test_structured_prune_removes_attention_heads(corpus, name):
    entry = corpus.get(name)
    before = attention_heads(entry.model, entry.feeds[0])
    assert before == 4 * 4  # 2 layers, 4 heads, 2 MatMuls each
    result = structured_prune(entry.model, sparsity=0.3, criterion="l1", dims=entry.dims)
    assert 0 < attention_heads(result.model, entry.feeds[0]) < before


DYNAMIC = [name for name in CASES if name.endswith("-dynamic")]


@pytest.mark.parametrize("name", cases(DYNAMIC))
def test_fixing_the_symbolic_dims_gives_the_static_exports_analysis(corpus, name):
    """With ``dims`` the analysis of a dynamic export equals the static export's (same weights);
    without, it can only under-report effective sparsity."""
    dynamic, static = corpus.get(name), corpus.get(name.removesuffix("-dynamic"))
    pruned = [
        onnxprune.prune(without_biases(e.model), sparsity=0.9).model for e in (dynamic, static)
    ]
    for level in ("channel", "exact"):
        want = onnxprune.analyze(pruned[1], level=level)
        assert want.effective_sparsity > want.direct_sparsity  # something dead to find
        got = onnxprune.analyze(pruned[0], level=level, dims=dynamic.dims)
        assert got.effective_sparsity == pytest.approx(want.effective_sparsity)
    assert onnxprune.analyze(pruned[0]).effective_sparsity <= want.effective_sparsity


COMMANDS = {
    "analyze": ["analyze", "{model}"],
    "analyze-exact": ["analyze", "{model}", "--exact"],
    "prune": ["prune", "{model}", "-o", "{out}", "--sparsity", "0.5"],
    "prune-structured": [
        "prune", "{model}", "-o", "{out}", "--structured", "l1", "--sparsity", "0.3",
    ],
    "compact": ["compact", "{model}", "-o", "{out}"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", cases())
def test_no_command_crashes(corpus, name, command, tmp_path, capsys):
    from onnxprune.cli import main

    entry = corpus.get(name)
    out = tmp_path / "out.onnx"
    argv = [a.format(model=entry.path, out=out) for a in COMMANDS[command]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1, err  # one line saying why, no traceback
    elif out.exists():
        assert_checked(onnx.load(out))


@pytest.mark.parametrize("allocation", ["global", "erk"])
@pytest.mark.parametrize("name", ["bert-torchscript", "llama-dynamo", "whisper-dynamo", "lstm"])
def test_effective_prune_equals_the_full_search(corpus, name, allocation):
    result = same_as_reference(corpus.get(name).model, 0.9, allocation)
    assert result.report.effective_sparsity <= 0.9
