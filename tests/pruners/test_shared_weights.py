"""Tied and shared weights: found past chains, left alone unless asked, never sliced.

A language model's head often reads the token-embedding table (GPT-2's dynamo export does);
TorchScript stores two layers with equal weights once and feeds the second through ``Identity``.
Pruning such a weight for one reader changes the others.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.graph.build import build_graph
from onnxprune.structured import structured_prune
from tests.helpers import refused
from tests.structured._common import assert_close, init, params, run


def _tied() -> onnx.ModelProto:
    """ids[1,4] -> Gather(E[10,6]) -> h -> MatMul W1[6,6] -> Relu -> MatMul Transpose(E) -> y.

    E is read by the embedding ``embed`` and, through the Transpose ``tie``, by the ``head``.
    Prunable weights: W1 (36) and E as the head uses it (60), 96 in all.
    """
    rng = np.random.default_rng(0)
    e = rng.normal(size=(10, 6)).astype(np.float32)
    w1 = rng.normal(size=(6, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
        helper.make_node("MatMul", ["h", "W1"], ["a"], name="fc"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Transpose", ["E"], ["Et"], name="tie", perm=[1, 0]),
        helper.make_node("MatMul", ["r", "Et"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 10])],
        [numpy_helper.from_array(e, "E"), numpy_helper.from_array(w1, "W1")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


IDS = {"ids": np.array([[0, 3, 7, 9]], np.int64)}


def test_a_tied_embedding_is_found_shared_with_every_reader():
    graph = build_graph(_tied())
    assert dict(graph.shared) == {"E": ("embed", "head")}


def test_unstructured_pruning_leaves_a_tied_weight_alone_and_says_why():
    model = _tied()
    result = onnxprune.prune(model, sparsity=0.3)  # 29 of 96: all from W1
    assert "E: shared by embed, head: left alone (see --prune-shared)" in result.warnings
    assert sorted(result.masks) == ["W1"]
    np.testing.assert_array_equal(init(result.model, "E"), init(model, "E"))
    assert int((init(result.model, "W1") == 0).sum()) == 29


def test_prune_shared_prunes_it_for_all_readers_with_a_warning():
    model = _tied()
    result = onnxprune.prune(model, sparsity=0.5, prune_shared=True)  # 48 of 96
    assert "E: shared by embed, head: pruned for all of them" in result.warnings
    e, w1 = init(result.model, "E"), init(result.model, "W1")
    assert int((e == 0).sum()) + int((w1 == 0).sum()) == 48
    assert (e == 0).any()
    np.testing.assert_array_equal(result.masks["E"], e != 0)


def test_structured_pruning_never_slices_a_tied_weight():
    model = _tied()
    result = structured_prune(model, sparsity=0.5)
    # W1's units feed the head, whose weight is E (tied): they stay, and the reason says so
    reasons = [group.reason for group in result.blocked]
    assert "MatMul node 'head': weight 'Et' shared by embed, head" in reasons
    assert init(result.model, "E").shape == (10, 6)
    assert_close(run(model, IDS), run(result.model, IDS))


def test_cli_refuses_prune_shared_with_structured(capsys, tmp_path):
    src = tmp_path / "tied.onnx"
    onnx.save(_tied(), src)
    argv = ["prune", str(src), "-o", str(tmp_path / "s.onnx"), "--structured", "l1"]
    message = refused(capsys, *argv, "--sparsity", "0.5", "--prune-shared")
    assert message.startswith("InvalidOptionError: --structured takes no --prune-shared")


# --- TorchScript: two equal layers stored once, the second read through Identity ---------------


@pytest.fixture(scope="module")
def deduplicated() -> onnx.ModelProto:
    """fc1 -> Relu -> fc2 (fc1's values) -> Relu -> mid -> Relu -> head, TorchScript export.

    The exporter stores fc2's weight and bias as ``Identity`` nodes of fc1's.
    """
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    fc1, fc2, mid, head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)
    with torch.no_grad():
        fc2.weight.copy_(fc1.weight)
        fc2.bias.copy_(fc1.bias)
    net = nn.Sequential(fc1, nn.ReLU(), fc2, nn.ReLU(), mid, nn.ReLU(), head).eval()
    buffer = io.BytesIO()
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter is deprecated
        torch.onnx.export(
            net, (torch.randn(2, 8),), buffer, dynamo=False, opset_version=17,
            input_names=["x"], output_names=["y"],
        )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    assert "Identity" in [n.op_type for n in model.graph.node]
    return model


@pytest.mark.slow  # a torch export
def test_layers_deduplicated_through_identity_are_shared(deduplicated):
    name = "0.weight"  # fc1's, which fc2 reads through Identity
    readers = build_graph(deduplicated).shared[name]
    assert len(readers) == 2
    result = onnxprune.prune(deduplicated, sparsity=0.2)
    assert f"{name}: shared by {', '.join(readers)}: left alone (see --prune-shared)" in (
        result.warnings
    )
    np.testing.assert_array_equal(init(result.model, name), init(deduplicated, name))


@pytest.mark.slow  # a torch export
def test_structured_pruning_slices_neither_user_of_a_deduplicated_layer(deduplicated):
    result = structured_prune(deduplicated, sparsity=0.5)
    assert result.units == {"4.weight": (4, 8)}  # mid: the only layer with units free to go
    kinds = {t.name: list(t.dims) for t in result.model.graph.initializer}
    assert kinds["0.weight"] == [8, 8]  # fc1's weight, whole, stored once
    assert params(result.model) < params(deduplicated)
    assert "Identity" in [n.op_type for n in result.model.graph.node]
    x = {"x": np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)}
    assert_close(run(result.masked, x), run(result.model, x))


# --- a weight read in the main graph and inside an If branch -----------------------------------


def _read_across_a_branch() -> onnx.ModelProto:
    """x[1,4] -> MatMul W (main) -> h -> If(c): then MatMul(h, W) (W from the outer scope),
    else Identity(h) -> y; V[4,4] is read in the main graph only (y2 = h @ V).

    W has one reader in each graph ("main" and "If_2/then_branch/body") but is one tensor: it
    is shared. V is not. Prunable weights: W (16, as the main graph uses it) and V (16).
    """
    rng = np.random.default_rng(0)
    then = helper.make_graph(
        [helper.make_node("MatMul", ["h", "W"], ["t"], name="body")],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    other = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["e"], name="pass")],
        "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="main"),
        helper.make_node("MatMul", ["h", "V"], ["y2"], name="side"),
        helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
    ]
    graph = helper.make_graph(
        nodes,
        "across",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 4]),
        ],
        [
            numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "V"),
        ],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_a_weight_read_inside_a_branch_and_outside_is_shared():
    model = _read_across_a_branch()
    graph = build_graph(model)
    readers = ("main", "If_2/then_branch/body")
    assert dict(graph.shared) == {"W": readers}
    then = next(b for b in graph.bodies if b.scope == "If_2/then_branch")
    assert dict(then.shared) == {"W": readers}
    result = onnxprune.prune(model, sparsity=0.25)  # 8 of 32: all from V
    assert "W: shared by main, If_2/then_branch/body: left alone (see --prune-shared)" in (
        result.warnings
    )
    np.testing.assert_array_equal(init(result.model, "W"), init(model, "W"))
    assert int((init(result.model, "V") == 0).sum()) == 8
