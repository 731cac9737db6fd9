"""Structured pruning and compaction of models exported by PyTorch's dynamo exporter.

The dynamo exporter stores a value_info for every weight, bias and intermediate tensor. Whatever
onnxprune writes must pass ``onnx.checker`` with the full check and strict shape inference (an
entry left with its old shape fails both: "Inferred shape and existing shape differ"), and must
compute what the masked model (the same pruning as zeros, original shapes) computes.

Each model is exported once per module (about half a minute each on a small machine). Parameters
are drawn at random, biases and norms included: a freshly initialized model has identical zero
biases, which the exporter stores once and shares between layers (shared tensors are not sliced).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.structured import compact, structured_prune
from tests.helpers import run_cli
from tests.structured._common import assert_close, params, run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxscript")  # the dynamo exporter's dependency
nn = torch.nn

pytestmark = [
    pytest.mark.slow,  # torch exports
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _cnn() -> tuple[nn.Module, tuple]:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 16), nn.ReLU(), nn.Linear(16, 4)
    )  # fmt: skip
    return net, (torch.randn(1, 3, 8, 8),)


def _mlp() -> tuple[nn.Module, tuple]:
    net = nn.Sequential(
        nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 30), nn.Tanh(), nn.Linear(30, 4)
    )
    return net, (torch.randn(2, 12),)


def _bert() -> tuple[nn.Module, tuple]:
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return transformers.BertModel(config), (torch.randint(0, 50, (1, 8)),)


BUILDERS = {"cnn": _cnn, "mlp": _mlp, "bert": _bert}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, onnx.ModelProto]:
    """Each model of ``BUILDERS``, random parameters, exported with ``dynamo=True``."""
    out = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        net, args = build()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        program = torch.onnx.export(net.eval(), args, dynamo=True, verbose=False)
        out[name] = program.model_proto
    return out


def feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Random inputs: token ids in [0, 50) for integer inputs, normal floats otherwise."""
    rng = np.random.default_rng(1)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[vi.name] = rng.integers(0, 50, shape)
        else:
            feeds[vi.name] = rng.normal(size=shape).astype(np.float32)
    return feeds


def assert_sound(model: onnx.ModelProto) -> None:
    """Full checker and strict shape inference pass (they fail on a stale value_info)."""
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)


def stored_weight_shapes(model: onnx.ModelProto) -> int:
    """How many initializers have a value_info entry (the dynamo exporter writes them)."""
    names = {t.name for t in model.graph.initializer}
    return sum(vi.name in names for vi in model.graph.value_info)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_structured_prune_passes_the_checker_and_equals_the_masked_model(exports, name):
    model = exports[name]
    assert stored_weight_shapes(model) > 0  # what made the old outputs fail
    result = structured_prune(model, sparsity=0.5)
    assert params(result.model) < params(model)
    assert_sound(result.model)
    x = feed(model)
    assert_close(run(result.masked, x), run(result.model, x))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_compact_of_an_unstructured_prune_passes_the_checker(exports, name):
    pruned = onnxprune.prune(exports[name], sparsity=0.9).model
    result = compact(pruned)
    assert result.removed
    assert_sound(result.model)
    x = feed(pruned)
    assert_close(run(pruned, x), run(result.model, x))


def test_cli_prune_compact_writes_a_model_that_passes_the_checker(exports, tmp_path):
    src, out = tmp_path / "bert.onnx", tmp_path / "small.onnx"
    onnx.save(exports["bert"], src)
    done = run_cli("prune", str(src), "-o", str(out), "--sparsity", "0.9", "--compact")
    assert done.returncode == 0, done.stderr
    small = onnx.load(out)
    assert params(small) < params(exports["bert"])
    assert_sound(small)
    pruned = onnxprune.prune(exports["bert"], sparsity=0.9).model  # the same pruning, uncut
    x = feed(small)
    assert_close(run(pruned, x), run(small, x))
