"""Transformers fused by ONNX Runtime's optimizer (``com.microsoft`` ops), pruned soundly.

``onnxruntime.transformers.optimizer.optimize_model`` rewrites a TorchScript export: the corpus's
BERT, GPT-2 and ViT (SDPA attention) keep their attention decomposed but get
``SkipLayerNormalization`` and ``BiasGelu``/``FastGelu``/``Gelu``; a BERT with eager attention and
an attention mask (``models.bert_eager``) gets ``Attention`` (or ``MultiHeadAttention``), and with
dynamic axes ``EmbedLayerNormalization``; the LLaMA gets ``SkipSimplifiedLayerNormalization`` and,
in ONNX's own domain where onnx's checker does not know it, ``SimplifiedLayerNormalization``
(loaded since ONNX Runtime runs it: ``onnxprune.runtime_ops``). Which ops appear is checked, then
the corpus properties
(tests/corpus/test_properties.py): zeroing what the analysis calls inactive after a 90% prune
changes no output (biases zero, contrib ones included); structured pruning at 30% removes
feed-forward neurons and, where fused, heads (``num_heads`` drops), and computes what its masked
model computes; everything written passes ``onnx.checker`` with full checking.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune import runtime_ops
from onnxprune.structured import structured_prune
from tests.helpers import run_cli, zero_inactive

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.transformers.optimizer")

pytestmark = [
    pytest.mark.slow,  # torch exports
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

MS = "com.microsoft"


@dataclass(frozen=True)
class Case:
    """A model for the optimizer: a corpus model, or ``bert_eager`` (static or dynamic)."""

    source: str
    model_type: str
    opt_level: int
    mha: bool = False
    expect: tuple[str, ...] = ()
    """Contrib ops the optimized model must hold."""
    dims: dict[str, int] = field(default_factory=dict)
    ffn: int = 32
    """Neurons of each feed-forward block (GPT-2's are 4 x 16)."""
    ffn_weights: int = 2
    """Weights whose outputs are those neurons (LLaMA's gate and up projections: 2 per layer)."""


FFN = ("SkipLayerNormalization",)
CASES = {
    "bert-o0": Case("bert-torchscript", "bert", 0, expect=(*FFN, "BiasGelu")),
    "bert-o1": Case("bert-torchscript", "bert", 1, expect=(*FFN, "Gelu")),
    "gpt2-o0": Case("gpt2-torchscript", "gpt2", 0, expect=(*FFN, "FastGelu"), ffn=64),
    "gpt2-o1": Case("gpt2-torchscript", "gpt2", 1, expect=(*FFN, "FastGelu"), ffn=64),
    "llama-o0": Case(
        "llama-torchscript", "gpt2", 0, expect=("SkipSimplifiedLayerNormalization",), ffn_weights=4
    ),
    "vit-o0": Case("vit-torchscript", "vit", 0, expect=(*FFN, "BiasGelu")),
    "vit-o1": Case("vit-torchscript", "vit", 1, expect=(*FFN, "Gelu")),
    "bert-attention-o0": Case("eager", "bert", 0, expect=(*FFN, "BiasGelu", "Attention")),
    "bert-mha-o0": Case("eager", "bert", 0, True, (*FFN, "BiasGelu", "MultiHeadAttention")),
    "bert-attention-dynamic-o1": Case(
        "eager-dynamic", "bert", 1, expect=(*FFN, "EmbedLayerNormalization", "Attention"),
        dims={"batch": 2, "sequence": 8},
    ),
}  # fmt: skip
FOLLOWED = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu"}
FOLLOWED |= {"Gelu", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}
"""Contrib ops the analysis follows (``EmbedLayerNormalization`` gathers embeddings by token ids
computed at run time, a fallback as ``Gather`` is)."""
FUSED = [name for name, case in CASES.items() if "Attention" in "".join(case.expect)]


@pytest.fixture(scope="module")
def optimized(corpus):
    """Each case's optimized model, its inputs and the model before, built on first use."""
    built: dict[str, tuple[onnx.ModelProto, list[dict[str, np.ndarray]], onnx.ModelProto]] = {}

    def get(name: str) -> tuple[onnx.ModelProto, list[dict[str, np.ndarray]], onnx.ModelProto]:
        if name not in built:
            built[name] = _optimize(corpus, CASES[name])
        return built[name]

    return get


def _optimize(
    corpus, case: Case
) -> tuple[onnx.ModelProto, list[dict[str, np.ndarray]], onnx.ModelProto]:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if case.source.startswith("eager"):
        from tests.corpus import models

        net = models.bert_eager()
        model = models.export(net, "torchscript", dynamic=case.source.endswith("dynamic"))
        feeds = {k: v.numpy() for k, v in net.inputs.items()}
        masked = dict(feeds, attention_mask=feeds["attention_mask"].copy())
        masked["attention_mask"][1, -3:] = 0  # the second sequence is 5 tokens long
        inputs = [feeds, masked]
    else:
        entry = corpus.get(case.source)
        model, inputs = entry.model, list(entry.feeds)
    options = FusionOptions(case.model_type)
    options.use_multi_head_attention = case.mha
    before = model
    model = onnx.ModelProto.FromString(model.SerializeToString())  # it rewrites its input
    result = optimize_model(
        model, case.model_type, num_heads=4, hidden_size=16, opt_level=case.opt_level,
        optimization_options=options, use_gpu=False,
    )  # fmt: skip
    return result.model, inputs, before  # no contrib opset import: its save() would add it


def _outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The outputs on ONNX Runtime's CPU provider, its graph optimizations off: at level 1 the
    optimizer stores initializers that ONNX Runtime 1.31's own constant folding then refuses
    to replace ("Attempt to replace the existing tensor"), in the unpruned model too."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        _with_contrib_opset(model).SerializeToString(), options, ["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def _with_contrib_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    if not any(o.domain == MS for o in model.opset_import):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.opset_import.append(onnx.helper.make_opsetid(MS, 1))
    return model


def _same(inputs, expected: onnx.ModelProto, got: onnx.ModelProto) -> None:
    for feeds in inputs:
        for a, b in zip(_outputs(expected, feeds), _outputs(got, feeds), strict=True):
            assert a.shape == b.shape
            assert float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(a).max()))


def _checked(model: onnx.ModelProto) -> None:
    """Full check, ONNX Runtime's ops in ONNX's domain moved to a domain the checker passes over."""
    model = _with_contrib_opset(model)
    ops = runtime_ops.unknown_ops(model)
    if ops:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        runtime_ops.stand_in(model, ops)
    onnx.checker.check_model(model, full_check=True)


BIASES = {
    "Add": None, "Gemm": (2,), "Conv": (2,), "LayerNormalization": (2,), "Attention": (2,),
    "MultiHeadAttention": (3,), "SkipLayerNormalization": (3, 4), "BiasGelu": (1,),
    "FastGelu": (1,), "EmbedLayerNormalization": (6,), "SkipSimplifiedLayerNormalization": (3,),
}  # fmt: skip
"""Per op, the inputs that are additive constants (``None``: all of them)."""


def _without_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every 1-D float additive constant zero (``BIASES``)."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    biases = set()
    for node in out.graph.node:
        if node.op_type in BIASES:
            at = BIASES[node.op_type] or range(len(node.input))
            biases.update(node.input[i] for i in at if i < len(node.input))
    for tensor in out.graph.initializer:
        bias = tensor.name in biases and len(tensor.dims) == 1
        if bias and tensor.data_type == onnx.TensorProto.FLOAT:
            zero = np.zeros(tuple(tensor.dims), np.float32)
            tensor.CopyFrom(numpy_helper.from_array(zero, tensor.name))
    return out


def _heads(model: onnx.ModelProto) -> int:
    """``num_heads`` of every contrib attention node, added up."""
    return sum(
        a.i
        for node in model.graph.node
        if node.domain == MS and node.op_type in ("Attention", "MultiHeadAttention")
        for a in node.attribute
        if a.name == "num_heads"
    )


@pytest.mark.parametrize("name", list(CASES))
def test_the_optimizer_fuses_what_we_expect(optimized, name):
    model, _, _ = optimized(name)
    ops = Counter(node.op_type for node in model.graph.node if node.domain == MS)
    assert set(CASES[name].expect) <= set(ops), ops
    if "Attention" in CASES[name].expect or "MultiHeadAttention" in CASES[name].expect:
        assert _heads(model) == 2 * 4  # 2 layers of 4 heads


@pytest.mark.parametrize("name", list(CASES))
def test_the_fused_model_costs_the_macs_of_the_export(optimized, name):
    # fused attention counts its scores and weighed values as the unfused MatMuls did, and its
    # projection as a MatMul; biases, norms and activations are not counted either way
    model, _, before = optimized(name)
    dims = CASES[name].dims
    assert onnxprune.analyze(model, dims=dims).macs == onnxprune.analyze(before, dims=dims).macs


@pytest.mark.parametrize("level", ["channel", "exact"])
@pytest.mark.parametrize("name", list(CASES))
def test_zeroing_what_analyze_calls_inactive_leaves_the_outputs_unchanged(optimized, name, level):
    model, inputs, _ = optimized(name)
    report = onnxprune.analyze(_without_biases(model), dims=CASES[name].dims)
    assert not [f for f in report.fallbacks if f.op_type in FOLLOWED]
    pruned = onnxprune.prune(_without_biases(model), sparsity=0.9).model
    zeroed, count = zero_inactive(pruned, level, CASES[name].dims)
    assert count > 0
    _same(inputs, pruned, zeroed)


@pytest.mark.parametrize("name", list(CASES))
def test_structured_prune_removes_neurons_and_heads_and_equals_its_masked_model(optimized, name):
    model, inputs, _ = optimized(name)
    result = structured_prune(model, sparsity=0.3, criterion="l1", dims=CASES[name].dims)
    _checked(result.model)
    _checked(result.masked)
    _same(inputs, result.masked, result.model)
    size = CASES[name].ffn
    ffn = [kept for kept, total in result.units.values() if total == size]
    assert len(ffn) == CASES[name].ffn_weights
    assert all(kept < size for kept in ffn)  # both feed-forward blocks lost neurons
    if name in FUSED:
        assert 0 < _heads(result.model) < _heads(model)


def test_an_optimized_llama_loads_and_is_written_as_it_came(optimized, tmp_path):
    # onnx's checker does not know the default-domain RMSNorm ONNX Runtime's optimizer writes;
    # onnxprune loads the model because ONNX Runtime does, and every command writes it back with
    # its IR version and opsets
    model = _with_contrib_opset(optimized("llama-o0")[0])
    assert runtime_ops.unknown_ops(model) == {"SimplifiedLayerNormalization"}
    with pytest.raises(onnx.checker.ValidationError, match="SimplifiedLayerNormalization"):
        onnx.checker.check_model(model)
    source = tmp_path / "llama.onnx"
    onnx.save(model, source)
    assert run_cli("analyze", str(source)).returncode == 0
    for name, flags in {
        "u": ["--sparsity", "0.9"],
        "s": ["--structured", "l1", "--sparsity", "0.3"],
    }.items():
        out = tmp_path / f"{name}.onnx"
        done = run_cli("prune", str(source), "-o", str(out), *flags)
        assert done.returncode == 0, done.stderr
        written = onnxprune.load_model(out)
        assert written.ir_version == model.ir_version
        assert list(written.opset_import) == list(model.opset_import)
        _checked(written)
