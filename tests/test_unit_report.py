"""``analyze`` per unit (heads, neurons) and its marks of shared weights, on hand-built graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.render import render_markdown
from onnxprune.report import format_table
from onnxprune.sparsity import unit_layers
from onnxprune.weights import ConstantResolver
from tests.render.test_markdown import _tables

D, HEADS, WIDTH, T = 8, 2, 4, 3


def _attention(wq: np.ndarray, wv: np.ndarray, wo: np.ndarray) -> object:
    """x[1, T, D] -> Q, K (Q's weight negated: its zeros, but no copy, which would be one
    parameter stored twice), V -> [1, T, 2 heads, 4] -> Transpose -> scores -> Softmax -> times
    V -> back to [1, T, D] -> the output projection ``wo``."""
    f = np.float32
    inits = [
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(-wq, "wk"),
        numpy_helper.from_array(wv, "wv"),
        numpy_helper.from_array(wo, "wo"),
        numpy_helper.from_array(np.array([1, T, HEADS, WIDTH], np.int64), "split"),
        numpy_helper.from_array(np.array([1, T, D], np.int64), "merge"),
        numpy_helper.from_array(np.array(0.5, f), "scale"),
    ]
    nodes = [helper.make_node("MatMul", ["x", f"w{p}"], [p], name=f"/attn/{p}_proj/MatMul")
             for p in "qkv"]  # fmt: skip
    for p in "qkv":
        nodes += [
            helper.make_node("Reshape", [p, "split"], [f"{p}4"]),
            helper.make_node("Transpose", [f"{p}4"], [f"{p}h"], perm=[0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["qh", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vh"], ["a"]),
        helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["at", "merge"], ["am"]),
        helper.make_node("MatMul", ["am", "wo"], ["o"], name="/attn/o_proj/MatMul"),
        helper.make_node("Relu", ["o"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, D])],
        inits,
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_each_head_gets_its_sparsity_and_a_zeroed_head_is_dead() -> None:
    rng = np.random.default_rng(0)
    wq, wv, wo = (rng.normal(size=(D, D)).astype(np.float32) + 3 for _ in range(3))
    wq[:, WIDTH:] = 0  # head 1's Q (and K, its negation) columns: 2 x 8 x 4 = 64 zeros
    wv[:, WIDTH:] = 0  # its V columns: 32
    wo[WIDTH:, :] = 0  # its rows of the output projection: 32
    report = onnxprune.analyze(_attention(wq, wv, wo), units=True)
    (block,) = [b for b in report.blocks if b.kind == "head"]
    assert block.module == "/attn"  # what its layers' node names share
    assert block.units == HEADS and block.dead == 1 and block.blocked == 0
    assert block.layers == ("wq", "wk", "wv", "wo")
    head0, head1 = block.heads
    # per head: 4 columns of Q, K, V (3 x 8 x 4) and 4 rows of the output projection (4 x 8)
    assert head0.params == head1.params == 3 * D * WIDTH + WIDTH * D == 128
    assert (head0.name, head0.direct_sparsity, head0.effective_sparsity) == ("head 0", 0.0, 0.0)
    assert (head1.name, head1.direct_sparsity, head1.effective_sparsity) == ("head 1", 1.0, 1.0)
    assert block.direct_sparsity == pytest.approx(0.5)
    table = format_table(report)
    assert "/attn" in table and "  head 1" in table


def test_a_weight_an_embedding_and_a_head_read_is_marked_shared() -> None:
    # E [V=5, D=4] is the Gather's table and, transposed, the head's weight: one stored tensor.
    table = numpy_helper.from_array(np.arange(20, dtype=np.float32).reshape(5, 4), "E")
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
        helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
        helper.make_node("MatMul", ["h", "Et"], ["logits"], name="lm_head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 5])],
        [table],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    report = onnxprune.analyze(model)
    (layer,) = report.layers
    assert (layer.name, layer.shared_by) == ("E", ("embed", "lm_head"))
    assert report.to_dict()["layers"][0]["shared_by"] == ["embed", "lm_head"]
    assert "  E: read by embed, lm_head" in format_table(report)
    shared = _tables(render_markdown(report.to_dict()))["layer"]
    assert shared == [["layer", "weight", "read by"], ["lm\\_head", "E", "embed, lm\\_head"]]


def test_rendered_report_has_a_row_per_head_and_the_shared_weights() -> None:
    rng = np.random.default_rng(0)
    wq, wv, wo = (rng.normal(size=(D, D)).astype(np.float32) + 3 for _ in range(3))
    wo[WIDTH:, :] = 0  # head 1's output rows: 32 of its 128 weights
    report = onnxprune.analyze(_attention(wq, wv, wo), units=True)
    tables = _tables(render_markdown(report.to_dict()))
    rows = tables["units"][1:]
    assert rows[0][:3] == ["/attn", "heads", "2"]
    assert [row[0] for row in rows[1:3]] == ["/attn head 0", "/attn head 1"]
    assert [row[-2] for row in rows[1:3]] == ["0.00%", "25.00%"]  # 32 / 128
    assert "layer" not in tables  # no shared weights: no such table


def test_a_norm_channel_with_a_zero_scale_is_dead() -> None:
    # x[1, 4] -> MatMul w -> LayerNormalization (scale with 1 zero of 4) -> y (a graph output:
    # the norm's channels are all kept by structured pruning).
    scale = np.array([1.0, 0.0, 2.0, 3.0], np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="/fc/MatMul"),
        helper.make_node("LayerNormalization", ["h", "g", "b"], ["y"], name="/norm/LN"),
    ]
    inits = {"w": np.ones((4, 4), np.float32), "g": scale, "b": np.zeros(4, np.float32)}
    norm = onnxprune.analyze(_norm_model(nodes, inits), units=True).blocks[-1]
    assert (norm.module, norm.kind, norm.layers) == ("/norm/LN", "norm channel", ("g",))
    assert (norm.units, norm.dead, norm.blocked, norm.params) == (4, 1, 4, 4)
    assert norm.direct_sparsity == norm.effective_sparsity == 0.25


def _rms_norm(form: str, scale: np.ndarray) -> object:
    """x[1, 4] -> MatMul w -> RMSNorm written in plain ops as torch exports LLaMA's -> y.

    ``div``: ``h * (1 / sqrt(mean(h^2) + eps))`` (TorchScript: a Constant 1 divided);
    ``reciprocal``: ``Cast(h) * Reciprocal(sqrt(...))`` (dynamo); ``plain``: ``h * h`` times
    the scale, no norm.
    """
    f = np.float32
    inits = {"w": np.ones((4, 4), f), "g": scale, "two": np.array(2, f), "eps": np.array(1e-6, f)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="/fc/MatMul")]
    if form == "plain":
        nodes.append(helper.make_node("Mul", ["h", "h"], ["n"]))
    else:
        nodes += [
            helper.make_node("Cast", ["h"], ["hc"], to=TensorProto.FLOAT),
            helper.make_node("Pow", ["hc", "two"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["mean"], axes=[-1]),
            helper.make_node("Add", ["mean", "eps"], ["var"]),
            helper.make_node("Sqrt", ["var"], ["root"]),
        ]
    if form == "div":
        one = numpy_helper.from_array(np.array(1, f))
        nodes += [
            helper.make_node("Constant", [], ["one"], value=one),
            helper.make_node("Div", ["one", "root"], ["inv"]),
        ]
    elif form == "reciprocal":
        nodes.append(helper.make_node("Reciprocal", ["root"], ["inv"]))
    if form != "plain":
        nodes.append(helper.make_node("Mul", ["hc", "inv"], ["n"]))
    nodes.append(helper.make_node("Mul", ["g", "n"], ["y"], name="/norm/Mul_1"))
    return _norm_model(nodes, inits)


def _norm_model(nodes: list, inits: dict[str, np.ndarray]) -> object:
    """x[1, 4] -> ``nodes`` -> y[1, 4], the ``inits`` stored as given."""
    graph = helper.make_graph(
        nodes,
        "norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("form", ["div", "reciprocal"])
def test_an_rms_norm_written_in_plain_ops_is_a_norm(form: str) -> None:
    # LLaMA's RMSNorm as both torch exporters write it: its scale's zero channel is dead.
    scale = np.array([1.0, 0.0, 2.0, 3.0], np.float32)
    norm = onnxprune.analyze(_rms_norm(form, scale), units=True).blocks[-1]
    assert (norm.module, norm.kind, norm.layers) == ("/norm/Mul_1", "norm channel", ("g",))
    assert (norm.units, norm.dead, norm.blocked, norm.params) == (4, 1, 4, 4)
    assert norm.direct_sparsity == norm.effective_sparsity == 0.25


def test_a_vector_times_no_norm_is_no_norm() -> None:
    scale = np.array([1.0, 0.0, 2.0, 3.0], np.float32)
    blocks = onnxprune.analyze(_rms_norm("plain", scale), units=True).blocks
    assert [b.kind for b in blocks if b.kind == "norm channel"] == []


def test_units_of_a_model_with_external_weights_equal_the_in_memory_ones(tmp_path) -> None:
    # The 95%-pruned MLP, its weights (over 4096 entries each) left in a file that analyze
    # reads one tensor at a time: the same blocks, zeros counted from the file.
    import onnx

    pruned = Path(__file__).resolve().parents[1] / "models" / "mlp_digits_pruned95.onnx"
    onnx.save(onnx.load(pruned), tmp_path / "m.onnx", save_as_external_data=True,
              location="m.bin", size_threshold=0)  # fmt: skip
    blocks = onnxprune.analyze(tmp_path / "m.onnx", units=True).blocks
    assert blocks == onnxprune.analyze(pruned, units=True).blocks
    assert [b.units for b in blocks] == [300, 100, 10]
    assert blocks[0].direct_sparsity > 0.9  # read from the file, not the zero stand-ins


def _classifier(op: str) -> object:
    """x[1, 4] -> MatMul w [4, 3] -> ``op`` (Softmax, Relu) -> y: a dense layer, no attention."""
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["s"]), helper.make_node(op, ["s"], ["y"])],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _gru(hidden: int = 3) -> object:
    """x[T, 1, 2] -> GRU (``hidden`` units; W, R, B all ones) -> Y_h [1, 1, hidden]."""
    gates = 3 * hidden
    inits = {"W": (1, gates, 2), "R": (1, gates, hidden), "B": (1, 2 * gates)}
    graph = helper.make_graph(
        [helper.make_node("GRU", ["x", "W", "R", "B"], ["", "y"], hidden_size=hidden)],
        "gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, hidden])],
        [numpy_helper.from_array(np.ones(s, np.float32), k) for k, s in inits.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def test_units_are_reported_by_default_for_attention_and_recurrent_layers() -> None:
    rng = np.random.default_rng(0)
    wq, wv, wo = (rng.normal(size=(D, D)).astype(np.float32) for _ in range(3))
    attention = _attention(wq, wv, wo)
    heads = [b for b in onnxprune.analyze(attention).blocks if b.kind == "head"]
    assert [(b.module, b.units, len(b.heads)) for b in heads] == [("/attn", HEADS, HEADS)]
    assert onnxprune.analyze(attention, units=False).blocks == ()
    (gru,) = onnxprune.analyze(_gru(hidden=3)).blocks
    assert (gru.kind, gru.units) == ("hidden unit", 3)


def test_a_dense_layer_into_softmax_gets_no_units_unless_asked() -> None:
    # Softmax over x @ w (a stored weight) is a classifier's output, not attention's scores
    # (those are the product of two computed tensors): the units would be w's 3 neurons,
    # which the layer table already counts.
    for op in ("Softmax", "Relu"):
        model = _classifier(op)
        assert onnxprune.analyze(model).blocks == ()
        (block,) = onnxprune.analyze(model, units=True).blocks
        assert (block.kind, block.units) == ("neuron", 3)


def test_unit_layers_finds_attention_and_recurrence_from_the_nodes() -> None:
    from tests.attention_models import fused

    cases = {
        "plain attention": (_attention(*np.ones((3, D, D), np.float32)), True),
        "fused Attention": (fused(), True),
        "GRU": (_gru(), True),
        "MatMul -> Softmax": (_classifier("Softmax"), False),
    }
    found = {}
    for name, (model, _) in cases.items():
        found[name] = unit_layers(model.graph, ConstantResolver(model.graph))
    assert found == {name: expected for name, (_, expected) in cases.items()}


@pytest.mark.parametrize("level", ["channel", "exact"])
def test_each_mask_is_handed_over_as_made_and_only_what_keep_returns_stays(level) -> None:
    # The units table counts each unit layer's mask as the analysis makes it and drops it, so a
    # large model's masks (a bool per weight) are never all held at once.
    import dataclasses

    from onnxprune.graph.build import build_graph
    from onnxprune.sparsity import LEVELS

    rng = np.random.default_rng(0)
    graph = build_graph(_attention(*(rng.normal(size=(D, D)).astype(np.float32) for _ in range(3))))
    names = frozenset(layer.name for layer in graph.layers)
    full = LEVELS[level](graph, masks_for=names)
    seen = {}

    def keep(layer, act):
        seen[layer.key] = act.mask
        return dataclasses.replace(act, mask=None)

    dropped = LEVELS[level](graph, masks_for=names, keep=keep)
    assert seen.keys() == {layer.key for layer in graph.layers}
    for key, mask in seen.items():
        np.testing.assert_array_equal(mask, full[key].mask)
        assert dropped[key] == dataclasses.replace(full[key], mask=None)


def _two_lstms(scopes: str | None) -> object:
    """x[3, 1, 2] -> LSTM (w0, r0, 4 hidden units) -> y0, and x -> LSTM (w1, r1) -> y1; each
    node carries ``scopes`` as its module stack when given (the dynamo export of a stacked
    ``nn.LSTM`` gives every layer's node the same), named ``/rnn/LSTM``, ``/rnn/LSTM_1``
    otherwise (TorchScript)."""
    rng = np.random.default_rng(0)
    inits, nodes, outputs = [], [], []
    for k in range(2):
        inits += [
            numpy_helper.from_array(rng.normal(size=(1, 16, 2)).astype(np.float32), f"w{k}"),
            numpy_helper.from_array(rng.normal(size=(1, 16, 4)).astype(np.float32), f"r{k}"),
        ]
        name = "" if scopes else f"/rnn/LSTM{'_1' if k else ''}"
        node = helper.make_node("LSTM", ["x", f"w{k}", f"r{k}"], [f"y{k}"], name, hidden_size=4)
        if scopes:
            node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes)
        nodes.append(node)
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [3, 1, 1, 4]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 2])
    graph = helper.make_graph(nodes, "lstms", [x], outputs, inits)
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("scopes", "labels"),
    [
        ("['', 'rnn', 'lstm']", ["rnn.l0", "rnn.l1"]),  # one module: told apart by layer
        (None, ["/rnn/LSTM", "/rnn/LSTM_1"]),  # node names differ already
    ],
)
def test_recurrent_layers_of_one_module_are_labelled_by_layer(scopes, labels) -> None:
    report = onnxprune.analyze(_two_lstms(scopes), units=True)
    assert [layer.label for layer in report.layers] == [labels[0]] * 2 + [labels[1]] * 2  # W, R
    assert [b.module for b in report.blocks if b.kind == "hidden unit"] == labels
