"""``prune``: targets, masks, composition, effective bisection, and the model it writes."""

from __future__ import annotations

import itertools
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import spearmanr

from onnxprune import InvalidOptionError, analyze, prune
from onnxprune.pruners.registry import ScoreContext, get_score

RNG = np.random.default_rng(0)


def _mlp(sizes=(16, 12, 8, 4), seed=0, ir=8, zeros=0.0):
    """x -> Gemm(transB) -> Relu -> ... ; weights stored [out, in] like torch's Linear."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        w = rng.standard_normal((n, k)).astype(np.float32)
        w[rng.random(w.shape) < zeros] = 0.0
        inits += [numpy_helper.from_array(w, f"fc{i}.weight")]
        inits += [numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"fc{i}.bias")]
        out = "y" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(
            helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out], transB=1)
        )
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, ir_version=ir, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="origin", value="test")
    return model


def _weights(model):
    return {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name.endswith("weight")
    }


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("target", [0.0, 0.3, 0.9, 0.97])
def test_global_magnitude_equals_a_brute_force_threshold(target):
    model = _mlp()
    weights = _weights(model)
    flat = np.concatenate([np.abs(w).reshape(-1) for w in weights.values()])
    k = round(target * flat.size)
    threshold = np.sort(flat)[k - 1] if k else -1.0  # continuous weights: no ties
    result = prune(model, sparsity=target)
    for name, w in weights.items():
        np.testing.assert_array_equal(result.masks[name], np.abs(w) > threshold)
        assert result.masks[name].dtype == bool
    assert result.report.direct_sparsity == pytest.approx(k / flat.size)


def test_pruned_model_runs_and_keeps_its_format():
    model = _mlp(ir=7)
    result = prune(model, sparsity=0.8)
    pruned = result.model
    assert pruned.ir_version == 7
    assert [(o.domain, o.version) for o in pruned.opset_import] == [("", 17)]
    assert [t.name for t in pruned.graph.initializer] == [t.name for t in model.graph.initializer]
    assert {p.key: p.value for p in pruned.metadata_props} == {"origin": "test"}
    for name, w in _weights(pruned).items():
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w != 0, result.masks[name])
    x = RNG.standard_normal((5, 16)).astype(np.float32)
    assert _run(pruned, x).shape == (5, 4)
    assert analyze(pruned).direct_sparsity == pytest.approx(0.8, abs=1 / 500)


def test_all_ones_masks_leave_outputs_bit_identical():
    model = _mlp()
    ones = {name: np.ones(w.shape, bool) for name, w in _weights(model).items()}
    result = prune(model, masks=ones)
    x = RNG.standard_normal((7, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(result.model, x), _run(model, x))
    assert result.model.SerializeToString() == model.SerializeToString()


def test_existing_zeros_and_given_masks_stay_pruned():
    model = _mlp(zeros=0.3)
    weights = _weights(model)
    given = {name: RNG.random(w.shape) > 0.2 for name, w in weights.items()}
    result = prune(model, sparsity=0.6, masks=given)
    for name, w in weights.items():
        assert not (result.masks[name] & (w == 0)).any()
        assert not (result.masks[name] & ~given[name]).any()


def test_masks_alone_are_applied():
    model = _mlp()
    weights = _weights(model)
    given = {name: RNG.random(w.shape) > 0.5 for name, w in weights.items()}
    result = prune(model, masks=given)
    for name, w in _weights(result.model).items():
        np.testing.assert_array_equal(w, np.where(given[name], weights[name], 0))


def test_random_scores_are_seeded_and_nested():
    model = _mlp()
    low = prune(model, sparsity=0.5, score="random", seed=3).masks
    high = prune(model, sparsity=0.8, score="random", seed=3).masks
    again = prune(model, sparsity=0.5, score="random", seed=3).masks
    other = prune(model, sparsity=0.5, score="random", seed=4).masks
    for name in low:
        assert not (high[name] & ~low[name]).any()  # everything pruned at 0.5 is pruned at 0.8
        np.testing.assert_array_equal(low[name], again[name])
    assert any((low[n] != other[n]).any() for n in low)


def test_lamp_scores_match_an_independent_computation():
    weights = {"a": RNG.standard_normal((6, 5)), "b": RNG.standard_normal((4, 3, 3))}
    ctx = ScoreContext(graph=None, model=None)
    scores = get_score("lamp").fn(weights, ctx)
    for name, w in weights.items():
        flat = w.reshape(-1) ** 2
        expected = np.array([v / flat[flat >= v].sum() for v in flat])  # no ties: distinct values
        rho = spearmanr(scores[name].reshape(-1), expected).statistic
        assert rho >= 0.999
        np.testing.assert_allclose(scores[name].reshape(-1), expected, rtol=1e-12)


@pytest.mark.parametrize("allocation", ["global", "erk", "uniform"])
@pytest.mark.parametrize("target", [0.5, 0.9])
def test_effective_target_is_met_and_maximal(allocation, target):
    model = _mlp(sizes=(10, 40, 6, 3), seed=1)
    result = prune(model, sparsity=target, effective=True, allocation=allocation)
    assert result.report.effective_sparsity <= target
    assert result.analyses >= 2
    removed = sum(int((~m).sum()) for m in result.masks.values())
    # One more removal, in the same allocation's order, exceeds the target.
    total = sum(m.size for m in result.masks.values())
    more = prune(model, sparsity=(removed + 1) / total, allocation=allocation)
    assert sum(int((~m).sum()) for m in more.masks.values()) == removed + 1
    assert more.report.effective_sparsity > target


def test_layer_collapse_is_reported_and_min_threshold_prevents_it():
    # fc1 is tiny in magnitude: global magnitude at 90% removes all of it.
    model = _mlp(sizes=(16, 12, 8, 4))
    for t in model.graph.initializer:
        if t.name == "fc1.weight":
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1e-3, t.name))
    collapsed = prune(model, sparsity=0.7)
    assert any("fc1.weight" in w and "layer collapse" in w for w in collapsed.warnings)
    assert not collapsed.masks["fc1.weight"].any()
    sigma = 0.02  # of 16*12 + 12*8 + 8*4 = 320 weights: every layer keeps >= 7
    safe = prune(model, sparsity=0.7, min_threshold=sigma)
    assert not any("pruned to 100%" in w for w in safe.warnings)  # near it at 7 kept, not gone
    assert all(m.sum() >= np.ceil(sigma * 320) for m in safe.masks.values())
    assert safe.report.direct_sparsity == pytest.approx(0.7, abs=1 / 320)


def _dynamic_quantized_linear():
    """y = x @ W as ONNX Runtime's dynamic quantization writes it: MatMulInteger of the
    quantized input and an int8 W (no float weight a pruner could zero)."""
    w = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "W", "xz", "wz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["scale"]),
        helper.make_node("Mul", ["accf", "scale"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_quantized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.1, np.float32), "ws"),
        ],
    )
    return helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_without_prunable_weights_is_pruned_with_a_warning():
    model = _dynamic_quantized_linear()
    result = prune(model, sparsity=0.5)
    assert [w for w in result.warnings if w.startswith("nothing was pruned")] == [
        "nothing was pruned: the model has no prunable weight (a constant weight of a Conv, "
        "ConvTranspose, Gemm, MatMul, LSTM, GRU or RNN; analyze lists the nodes it could not "
        "follow)"
    ]
    assert result.masks == {}
    assert result.model.graph == model.graph
    assert not any("nothing was pruned" in w for w in prune(_mlp(), sparsity=0.5).warnings)


def test_layers_and_exclude_choose_what_is_pruned():
    model = _mlp()
    only = prune(model, sparsity=0.5, layers=r"fc[01]\.")
    assert set(only.masks) == {"fc0.weight", "fc1.weight"}
    assert _weights(only.model)["fc2.weight"].all()
    assert only.report.direct_sparsity == pytest.approx(0.5, abs=1 / 300)
    rest = prune(model, sparsity=0.3, exclude="fc0")
    assert set(rest.masks) == {"fc1.weight", "fc2.weight"}


def test_external_scores_keyed_by_weight_name():
    model = _mlp()
    weights = _weights(model)
    # Scores that prefer small weights: the opposite of magnitude.
    scores = {name: -np.abs(w) for name, w in weights.items()}
    result = prune(model, sparsity=0.5, scores=scores)
    flat = np.concatenate([np.abs(w).reshape(-1) for w in weights.values()])
    cut = np.sort(flat)[::-1][round(0.5 * flat.size) - 1]
    for name, w in weights.items():
        np.testing.assert_array_equal(result.masks[name], np.abs(w) < cut)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": 1.0}, "sparsity=1.0 must be in [0, 1)"),
        ({"sparsity": -0.1}, "must be in [0, 1)"),
        ({"sparsity": 0.5, "score": "nope"}, "unknown score 'nope'"),
        ({"sparsity": 0.5, "allocation": "nope"}, "unknown allocation 'nope'"),
        ({"sparsity": 0.5, "scores": {"fc0.weight": np.ones((12, 16))}}, "scores lack 2"),
        ({"sparsity": 0.5, "layers": "("}, "not a regular expression"),
        ({"sparsity": 0.5, "layers": "zzz"}, "leave no prunable weight"),
        ({}, "nothing to do"),
        ({"sparsity": 0.5, "nm": "2:4"}, "either sparsity or nm, not both"),
        ({"masks": {"nope": np.ones(3, bool)}}, "masks name no prunable weight"),
        ({"masks": {"fc0.weight": np.ones((16, 12), bool)}}, "has shape (16, 12)"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(InvalidOptionError, match=re.escape(message)):
        prune(_mlp(), **kwargs)


def test_wrong_shaped_external_scores():
    model = _mlp()
    scores = {name: np.ones(w.shape[::-1]) for name, w in _weights(model).items()}
    with pytest.raises(InvalidOptionError, match=r"scores for 'fc0\.weight' have shape"):
        prune(model, sparsity=0.5, scores=scores)


def _conv_with_constant_weights():
    """Conv weights from a Constant node and a ConstantOfShape node, as some exporters write."""
    w1 = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1, "w1v")),
        helper.make_node(
            "ConstantOfShape",
            ["w2_shape"],
            ["w2"],
            value=numpy_helper.from_array(np.array([0.5], np.float32)),
        ),
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "c",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])],
        [numpy_helper.from_array(np.array([2, 4, 1, 1], np.int64), "w2_shape")],
    )
    return helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def test_constant_and_constant_of_shape_weights_are_rewritten():
    model = _conv_with_constant_weights()
    result = prune(model, sparsity=0.5, allocation="uniform")
    assert set(result.masks) == {"w1", "w2"}
    report = analyze(result.model)
    assert {layer.name for layer in report.layers} == {"w1", "w2"}
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["w1"].zeros == 18 and by_name["w2"].zeros == 4
    x = RNG.standard_normal((1, 1, 5, 5)).astype(np.float32)
    assert _run(result.model, x).shape == (1, 2, 5, 5)
    onnx.checker.check_model(result.model, full_check=True)
