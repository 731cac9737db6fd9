"""Dependency groups that stay or fold: what blocks a group, constant residual and dense
channels that ``compact`` folds into their consumers, IR 3 models whose initializers are also
graph inputs, and the light ResNet-50 and DenseNet-121 from the onnx package.

Every case runs the pruned model on ONNX Runtime against the masked one (or the original, for
``compact``) and checks it with ``onnx.checker``; expected shapes, folded biases and parameter
counts are worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.structured import compact, structured_prune
from onnxprune.structured._constants import materialize
from tests.structured._common import (
    LIGHT,
    assert_close,
    assert_pruned_like_masked,
    export,
    init,
    params,
    run,
)
from tests.structured._group_models import dense_like, graph_model, randomize_batchnorms

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


# ---------------------------------------------------------------------------------------------
# 1. What blocks a group: a graph output, an unknown op, a shared weight, a graph input


def _blocked_model(case: str) -> onnx.ModelProto:
    """x -> [conv a (4 filters), reached in a way that blocks its units] -> conv b (6) -> Relu
    -> conv c (3) -> y. Only b can lose units."""
    rng = np.random.default_rng(0)
    inits = {
        "a": rng.normal(size=(4, 3, 3, 3)),
        "ab": rng.normal(size=4),
        "b": rng.normal(size=(6, 4, 1, 1)),
        "c": rng.normal(size=(3, 6, 1, 1)),
    }
    inputs = {"x": [2, 3, 5, 5]}
    outputs: dict[str, list[int] | None] = {"y": [2, 3, 5, 5]}
    domains: tuple[tuple[str, int], ...] = ()
    nodes = [helper.make_node("Conv", ["x", "a", "ab"], ["h"], pads=[1, 1, 1, 1])]
    if case == "graph_output":
        outputs["h"] = [2, 4, 5, 5]
        nodes.append(helper.make_node("Relu", ["h"], ["u"]))
    elif case == "lrn":  # normalizes each channel by its neighbours: channels mix
        nodes.append(helper.make_node("LRN", ["h"], ["u"], size=3))
    elif case == "custom_domain":  # an ONNX Runtime op onnxprune does not follow
        nodes.append(helper.make_node("Inverse", ["h"], ["u"], domain="com.microsoft"))
        domains = (("com.microsoft", 1),)
    elif case == "shared_weight":
        inits["s"] = rng.normal(size=(4, 4, 1, 1))
        nodes.append(helper.make_node("Conv", ["h", "s"], ["s1"]))
        nodes.append(helper.make_node("Relu", ["s1"], ["s2"]))
        nodes.append(helper.make_node("Conv", ["s2", "s"], ["u"]))
    else:  # residual_input
        inputs["r"] = [2, 4, 5, 5]
        nodes.append(helper.make_node("Add", ["h", "r"], ["u"]))
    nodes += [
        helper.make_node("Conv", ["u", "b"], ["v"]),
        helper.make_node("Relu", ["v"], ["w"]),
        helper.make_node("Conv", ["w", "c"], ["y"]),
    ]
    return graph_model(nodes, inputs, outputs, inits, domains=domains)


@pytest.mark.parametrize(
    "case",
    ["graph_output", "lrn", "custom_domain", "shared_weight", "residual_input"],
)
def test_blocked_units_stay(case):
    model = _blocked_model(case)
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    assert result.units == {"b": (3, 6)}
    for name in ("a", "ab") + (("s",) if case == "shared_weight" else ()):
        assert np.array_equal(init(result.masked, name), init(model, name))
        assert np.array_equal(init(result.model, name), init(model, name))
    assert init(result.model, "b").shape == (3, 4, 1, 1)
    assert init(result.model, "c").shape == (3, 3, 1, 1)
    rng = np.random.default_rng(1)
    feed = {"x": rng.normal(size=(2, 3, 5, 5)).astype(np.float32)}
    if case == "residual_input":
        feed["r"] = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    assert_pruned_like_masked(result, feed)


# ---------------------------------------------------------------------------------------------
# 2. A residual channel that only carries BN biases: removed, its constant folded


def test_compact_folds_a_constant_residual_channel_into_every_consumer():
    rng = np.random.default_rng(0)
    eps = 1e-5
    inits = {
        "A": rng.normal(size=(4, 3, 3, 3)),
        "bA": rng.normal(size=4),
        "B": rng.normal(size=(4, 4, 1, 1)),
        "bB": rng.normal(size=4),
        "C": rng.normal(size=(5, 4, 1, 1)),
        "bC": rng.normal(size=5),
        "D": rng.normal(size=(5, 4, 1, 1)),  # no bias: one is made for the folded constant
        "E": rng.normal(size=(3, 10, 1, 1)),
        "bE": rng.normal(size=3),
    }
    for bn in ("a", "b"):
        inits[f"s{bn}"] = rng.uniform(0.5, 1.5, 4)
        inits[f"t{bn}"] = rng.uniform(0.5, 1.0, 4)  # BN shifts > 0 keep the channel on after ReLU
        inits[f"m{bn}"] = rng.uniform(-0.2, 0.2, 4)
        inits[f"v{bn}"] = rng.uniform(0.5, 2.0, 4)
    inits["A"][1] = 0  # channel 1: no filter of the residual group (A's, B's) reads anything
    inits["B"][1] = 0
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    nodes = [
        helper.make_node("Conv", ["x", "A", "bA"], ["a0"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a0", "sa", "ta", "ma", "va"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["a"]),
        helper.make_node("Conv", ["a", "B", "bB"], ["b0"]),
        helper.make_node("BatchNormalization", ["b0", "sb", "tb", "mb", "vb"], ["r"]),
        helper.make_node("Add", ["a", "r"], ["s"]),
        helper.make_node("Relu", ["s"], ["t"]),
        helper.make_node("Conv", ["t", "C", "bC"], ["c"]),
        helper.make_node("Conv", ["t", "D"], ["d"]),
        helper.make_node("Concat", ["c", "d"], ["cd"], axis=1),
        helper.make_node("Relu", ["cd"], ["e"]),
        helper.make_node("Conv", ["e", "E", "bE"], ["y"]),
    ]
    model = graph_model(nodes, {"x": [2, 3, 6, 6]}, {"y": [2, 3, 6, 6]}, inits)
    result = compact(model)

    # What channel 1 holds everywhere, by hand in float64.
    p = {k: v.astype(np.float64) for k, v in inits.items()}
    a1 = max(0.0, (p["bA"][1] - p["ma"][1]) / np.sqrt(p["va"][1] + eps) * p["sa"][1] + p["ta"][1])
    r1 = (p["bB"][1] - p["mb"][1]) / np.sqrt(p["vb"][1] + eps) * p["sb"][1] + p["tb"][1]
    t1 = max(0.0, a1 + r1)
    assert a1 > 0 and t1 > 0  # a real constant to fold, not a zero to drop

    assert result.removed == {"A": 1, "B": 1}
    assert result.folded == {"A": 1, "B": 1}
    rest = [0, 2, 3]
    m = result.model
    assert np.array_equal(init(m, "A"), inits["A"][rest])
    assert np.array_equal(init(m, "sb"), inits["sb"][rest])
    # B reads channel 1 of a, C and D channel 1 of t: each bias takes weight * constant.
    expected_bB = p["bB"][rest] + p["B"][rest, 1, 0, 0] * a1
    assert np.allclose(init(m, "bB"), expected_bB, rtol=1e-6, atol=1e-6)
    assert np.array_equal(init(m, "B"), inits["B"][np.ix_(rest, rest)])
    assert np.allclose(init(m, "bC"), p["bC"] + p["C"][:, 1, 0, 0] * t1, rtol=1e-6, atol=1e-6)
    d_node = next(n for n in m.graph.node if n.output[0] == "d")
    assert len(d_node.input) == 3
    assert np.allclose(init(m, d_node.input[2]), p["D"][:, 1, 0, 0] * t1, rtol=1e-6, atol=1e-6)
    assert init(m, "C").shape == init(m, "D").shape == (5, 3, 1, 1)
    # Before: A 4*27+4, BNs 2*16, B 16+4, C 20+5, D 20, E 30+3.
    assert result.params_before == 112 + 32 + 20 + 25 + 20 + 33 == 242
    # After: A 3*27+3, BNs 2*12, B 9+3, C 15+5, D 15 + 5 (new bias), E 33.
    assert result.params_after == 84 + 24 + 12 + 20 + 20 + 33 == 193 == params(m)
    onnx.checker.check_model(m, full_check=True)
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    assert_close(run(model, {"x": x}), run(m, {"x": x}))


def test_compact_folds_a_constant_dense_channel_into_every_later_layer():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = dense_like(torch)
    randomize_batchnorms(torch, net)
    with torch.no_grad():
        net.stem.weight[[1, 5]] = 0  # stem channels 1 and 5 hold their biases
        net.layers[1][2].weight[2] = 0  # layer 1's channel 2: concat channel 8 + 4 + 2 = 14
        for bn in (net.layers[0][0], net.layers[1][0], net.layers[2][0], net.trans[0]):
            # the constant channels it sees stay on past its ReLU
            bn.bias[[j for j in (1, 5, 14) if j < bn.num_features]] = 2.0
    model = export(torch, net, (2, 3, 8, 8))
    result = compact(model)

    assert result.removed == {"stem.weight": 2, "layers.1.2.weight": 1}
    assert result.folded == result.removed
    stem_bias = init(model, "stem.bias").astype(np.float64)
    held = {1: stem_bias[1], 5: stem_bias[5], 14: float(init(model, "layers.1.2.bias")[2])}

    def added(conv: str, bn: str, channels: list[int]) -> np.ndarray:
        """What the constant ``channels`` add to the conv's bias through its BN and ReLU."""
        p = {k: init(model, f"{bn}.{k}").astype(np.float64) for k in ("weight", "bias")}
        p |= {k: init(model, f"{bn}.running_{k}").astype(np.float64) for k in ("mean", "var")}
        c = np.array([held[j] for j in channels])
        z = (c - p["mean"][channels]) / np.sqrt(p["var"][channels] + 1e-5)
        on = np.maximum(z * p["weight"][channels] + p["bias"][channels], 0.0)
        return init(model, f"{conv}.weight").astype(np.float64)[:, channels, 0, 0] @ on

    # Every layer after the stem reads channels 1 and 5; layer 2 and the transition also 14.
    # Layer 1 loses its own filter 2, so its bias loses entry 2.
    reads = {
        "layers.0": [1, 5],
        "layers.1": [1, 5],
        "layers.2": [1, 5, 14],
        "trans": [1, 5, 14],
    }
    for layer, channels in reads.items():
        conv = f"{layer}.2"
        delta = added(conv, f"{layer}.0", channels)
        assert np.abs(delta).max() > 1e-2  # dropping the channels without folding would show
        expected = init(model, f"{conv}.bias") + delta
        if layer == "layers.1":
            expected = np.delete(expected, 2)
        assert np.allclose(init(result.model, f"{conv}.bias"), expected, rtol=1e-5, atol=1e-5)
    # After: stem 6*27+6, BNs 4*(6+10+13+17), layers 4*6+4, 3*10+3, 4*13+4, trans 8*17+8, fc 45.
    assert result.params_after == 168 + 184 + 28 + 33 + 56 + 144 + 45 == 658
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert_close(run(model, {"x": x}), run(result.model, {"x": x}))


# ---------------------------------------------------------------------------------------------
# 3. IR 3 / opset 9: every initializer is also a graph input


def test_ir3_initializer_inputs_take_the_new_shapes():
    rng = np.random.default_rng(0)
    inits = {
        "A": rng.normal(size=(6, 3, 3, 3)),
        "bA": rng.normal(size=6),
        "s": rng.uniform(0.5, 1.5, 6),
        "t": rng.normal(size=6),
        "m": rng.normal(size=6),
        "v": rng.uniform(0.5, 2.0, 6),
        "B": rng.normal(size=(4, 6, 1, 1)),
        "bB": rng.normal(size=4),
        "G": rng.normal(size=(5, 4)),
        "bG": rng.normal(size=5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "A", "bA"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h", "s", "t", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Conv", ["r", "B", "bB"], ["k"]),
        helper.make_node("Relu", ["k"], ["q"]),
        helper.make_node("GlobalAveragePool", ["q"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "bG"], ["y"], transB=1),
    ]
    tensors = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in tensors]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], tensors
    )
    model = helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 9)])
    onnx.checker.check_model(model, full_check=True)
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    assert result.units == {"A": (3, 6), "B": (2, 4)}
    assert result.model.ir_version == 3
    declared = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in result.model.graph.input
    }
    assert declared == {
        "x": [2, 3, 6, 6],
        "A": [3, 3, 3, 3],
        **{name: [3] for name in ("bA", "s", "t", "m", "v")},
        "B": [2, 3, 1, 1],
        "bB": [2],
        "G": [5, 2],
        "bG": [5],
    }
    for name, shape in declared.items():
        if name != "x":
            assert list(init(result.model, name).shape) == shape
    # A 3*27+3, BN 4*3, B 2*3+2, G 5*2+5.
    assert result.compaction.params_after == 84 + 12 + 8 + 15 == params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 4. The light ResNet-50 and DenseNet-121 with random weights


def _light(name: str) -> onnx.ModelProto:
    """The light model with its ConstantOfShape weights made random initializers."""
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    materialize(model)
    rng = np.random.default_rng(0)
    variances = {n.input[4] for n in model.graph.node if n.op_type == "BatchNormalization"}
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            shape = tuple(t.dims)
            if t.name in variances:
                value = rng.uniform(0.5, 2.0, shape)
            else:
                value = rng.normal(0.0, 0.05, shape)
            t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), t.name))
    return model


def _with_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` that also outputs what its final Softmax reads, if it ends in one."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    last = out.graph.node[-1]
    if last.op_type == "Softmax":
        out.graph.output.append(
            helper.make_tensor_value_info(last.input[0], TensorProto.FLOAT, None)
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("name", "min_layers"), [("resnet50", 53), ("densenet121", 120)])
def test_light_models_prune_and_match_masked(name, min_layers):
    model = _light(name)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    outputs = {o.name for o in model.graph.output}
    # Every conv but the one writing the graph output (DenseNet's 1x1 classifier) can lose
    # filters; ResNet-50 ends in Gemm -> Softmax, so all 53 convs can.
    prunable = {n.input[1] for n in convs if n.output[0] not in outputs}
    assert len(prunable) == min_layers
    result = structured_prune(model, sparsity=0.3, criterion="l1")

    assert set(result.units) == prunable
    assert len(result.units) >= (50 if name == "resnet50" else 100)
    for kept, total in result.units.values():  # per layer, ceil(0.7 * n) stay
        assert kept == math.ceil(round(0.7 * total, 9))
    before, after = result.compaction.params_before, result.compaction.params_after
    assert after <= 0.6 * before
    assert after == params(result.model)
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    feed = {convs[0].input[0]: x}  # the image the first conv reads
    expected = run(_with_logits(result.masked), feed)
    got = run(_with_logits(result.model), feed)
    assert len(got) == (2 if name == "resnet50" else 1)
    assert_close(expected, got, floor=0.0)  # relative to max |a| alone


def test_weight_read_inside_a_subgraph_is_not_sliced():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    w[:, 1] = 0  # unit 1 of h: no incoming weight, no bias: dead
    then = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 3])],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["w"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4, 3])],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "v"], ["y"]),
        helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=other),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 3]),
        ],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.ones((3, 2), np.float32), "v"),
        ],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    result = compact(model)
    assert result.removed == {}
    assert init(result.model, "w").shape == (4, 3)
    feed = {"x": rng.normal(size=(2, 4)).astype(np.float32), "c": np.array(True)}
    assert_close(run(model, feed), run(result.model, feed))


def test_per_channel_constant_of_a_blocked_add_is_not_sliced():
    """Add(h, per-channel k, ...) where a later input blocks the node: k must stay whole."""
    rng = np.random.default_rng(0)
    inits = {
        "a": rng.normal(size=(4, 3, 1, 1)),
        "k": rng.normal(size=(1, 4, 1, 1)),
        "b": rng.normal(size=(2, 4, 1, 1)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "a"], ["h"]),
        helper.make_node("Sum", ["h", "k", "r"], ["s"]),  # r: a graph input, so s is blocked
        helper.make_node("Conv", ["s", "b"], ["y"]),
    ]
    model = graph_model(nodes, {"x": [1, 3, 4, 4], "r": [1, 4, 4, 4]}, {"y": [1, 2, 4, 4]}, inits)
    result = structured_prune(model, sparsity=0.5)
    assert result.units == {}
    assert init(result.model, "k").shape == (1, 4, 1, 1)
    feed = {"x": rng.normal(size=(1, 3, 4, 4)).astype(np.float32)}
    feed["r"] = rng.normal(size=(1, 4, 4, 4)).astype(np.float32)
    assert_pruned_like_masked(result, feed)


def test_light_shufflenet_channel_shuffles_and_grouped_convs_are_followed():
    model = _light("shufflenet")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    result = structured_prune(model, sparsity=0.3, criterion="l1")
    assert set(result.units) == {n.input[1] for n in convs}  # every conv loses filters
    groups = {n.output[0]: next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs}
    kept = {t.name: t.dims[0] for t in result.model.graph.initializer}
    for node in result.model.graph.node:
        if node.op_type == "Conv" and 1 < groups.get(node.output[0], 1) < kept[node.input[1]]:
            assert kept[node.input[1]] % groups[node.output[0]] == 0  # equal groups
    assert result.compaction.params_after < result.compaction.params_before
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    feed = {convs[0].input[0]: x}
    expected = run(_with_logits(result.masked), feed)
    assert_close(expected, run(_with_logits(result.model), feed), floor=0.0)
