"""Dependency groups on the shapes networks take: dense concats, depthwise convs, splits,
reshapes, what blocks a group, residual constants folded away, IR 3 models, and the light
ResNet-50 and DenseNet-121 from the onnx package.

Every case runs the pruned model on ONNX Runtime against the masked one (or the original, for
``compact``) and checks it with ``onnx.checker``; expected shapes, kept filters and parameter
counts are worked out by hand in the comments and recomputed with numpy where they depend on
random weights.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

from onnxprune.structured import compact, structured_prune
from onnxprune.structured._constants import materialize

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


# ---------------------------------------------------------------------------------------------
# helpers


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the light models carry an unused initializer ORT warns about
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feed)


def _assert_close(expected: list[np.ndarray], got: list[np.ndarray]) -> None:
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, float(np.abs(a).max()))


def _assert_pruned_like_masked(result, feed: dict[str, np.ndarray]) -> None:
    onnx.checker.check_model(result.model, full_check=True)
    _assert_close(_run(result.masked, feed), _run(result.model, feed))


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == op_type)


def _attr(node: onnx.NodeProto, name: str):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _params(model: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) for t in model.graph.initializer)


def _top_rows(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, in order (what L1 pruning keeps)."""
    return np.sort(np.argsort(score, kind="stable")[score.size - k :])


def _row_l1(w: np.ndarray) -> np.ndarray:
    return np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(axis=1)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int]],
    outputs: dict[str, list[int] | None],
    inits: dict[str, np.ndarray],
    opset: int = 17,
    domains: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    """Float inputs and outputs, initializers stored as given (float64 becomes float32)."""
    tensors = [
        numpy_helper.from_array(v.astype(np.float32) if v.dtype == np.float64 else v, k)
        for k, v in inits.items()
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in outputs.items()],
        tensors,
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    return helper.make_model(graph, ir_version=10, opset_imports=opsets)


def _export(torch, net, shape: tuple[int, ...]) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        net.eval(), (torch.randn(*shape),), buffer, dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    return model


def _randomize_batchnorms(torch, net) -> None:
    """Trained-looking statistics (also keeps torch from sharing the default 0/1 tensors)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


# ---------------------------------------------------------------------------------------------
# 1. DenseNet-like: every layer reads the concat of all features before it


def _dense_like(torch):
    nn = torch.nn

    class DenseLike(nn.Module):
        """stem 3->8; three layers BN-ReLU-Conv1x1 (growth 4) over the concat of all earlier
        features (8, 12, 16 channels); transition BN-ReLU-Conv1x1 20->8, AvgPool; GAP, Linear."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(8 + 4 * i), nn.ReLU(), nn.Conv2d(8 + 4 * i, 4, 1))
                for i in range(3)
            )
            self.trans = nn.Sequential(
                nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 8, 1), nn.AvgPool2d(2)
            )
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            features = [self.stem(x)]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            h = self.trans(torch.cat(features, 1))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))

    return DenseLike()


def test_densenet_concats_shrink_to_the_kept_channels_of_their_inputs():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _dense_like(torch)
    _randomize_batchnorms(torch, net)
    model = _export(torch, net, (2, 3, 8, 8))
    layer_convs = [f"layers.{i}.2.weight" for i in range(3)]
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    # ceil(0.5 * n) per layer; the classifier's outputs are the graph's, so it keeps them.
    assert result.units == {
        "stem.weight": (4, 8),
        **{name: (2, 4) for name in layer_convs},
        "trans.2.weight": (4, 8),
    }
    # Each group is one filter: the kept filters are the top mean |w| rows of each layer.
    kept = {
        name: _top_rows(_row_l1(_init(model, name)), k) for name, (k, _) in result.units.items()
    }
    # The channels the i-th concat keeps: the stem's, then those of layer j at offset 8 + 4j.
    concat_kept = [kept["stem.weight"]]
    for j, name in enumerate(layer_convs):
        concat_kept.append(np.concatenate([concat_kept[-1], 8 + 4 * j + kept[name]]))
    bn_names = [f"layers.{i}.0" for i in range(3)] + ["trans.0"]
    for bn, channels, n in zip(bn_names, concat_kept, [4, 6, 8, 10], strict=True):
        assert channels.size == n  # 4 from the stem, 2 more per layer
        for p in ("weight", "bias", "running_mean", "running_var"):
            original = _init(model, f"{bn}.{p}")
            assert np.array_equal(_init(result.model, f"{bn}.{p}"), original[channels])
    for name, channels in zip([*layer_convs, "trans.2.weight"], concat_kept, strict=True):
        w = _init(model, name)
        assert np.array_equal(_init(result.model, name), w[np.ix_(kept[name], channels)])
    fc = _init(result.model, "fc.weight")
    assert np.array_equal(fc, _init(model, "fc.weight")[:, kept["trans.2.weight"]])

    inferred = shape_inference.infer_shapes(result.model)
    concat_outputs = [n.output[0] for n in inferred.graph.node if n.op_type == "Concat"]
    channels = {
        vi.name: vi.type.tensor_type.shape.dim[1].dim_value for vi in inferred.graph.value_info
    }
    assert [channels[o] for o in concat_outputs] == [4, 6, 8, 10]  # the first is cat([stem])

    # Before: stem 8*27+8, BNs 4*(8+12+16+20), layers 4*8+4, 4*12+4, 4*16+4, trans 8*20+8, fc 45.
    assert result.compaction.params_before == 224 + 224 + 36 + 52 + 68 + 168 + 45 == 817
    # After: stem 4*27+4, BNs 4*(4+6+8+10), layers 2*4+2, 2*6+2, 2*8+2, trans 4*10+4, fc 5*4+5.
    assert result.compaction.params_after == 112 + 112 + 10 + 14 + 18 + 44 + 25 == 335
    assert _params(result.model) == 335
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    _assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 2. MobileNet-like: depthwise convs tie their output channels to their input channels


def _mobile_like(torch):
    nn = torch.nn

    def block(c_in: int, c_out: int, k: int, groups: int) -> list:
        conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups)
        return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]

    class MobileLike(nn.Module):
        """stem 3->8, depthwise 8 (groups 8), pointwise 8->16, depthwise with channel
        multiplier 2 (16->32, groups 16), pointwise 32->16, GAP, Linear 16->5."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(3, 8, 3, 1), *block(8, 8, 3, 8), *block(8, 16, 1, 1),
                *block(16, 32, 3, 16), *block(32, 16, 1, 1),
            )  # fmt: skip
            self.fc = nn.Linear(16, 5)

        def forward(self, x):
            h = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.fc(torch.flatten(h, 1))

    return MobileLike()


def test_depthwise_convs_lose_the_channels_of_their_inputs():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _mobile_like(torch)
    _randomize_batchnorms(torch, net)
    model = _export(torch, net, (2, 3, 8, 8))  # the exporter fuses every BN into its conv
    conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    assert [_attr(n, "group") for n in conv_nodes] == [1, 8, 1, 16, 1]
    stem, dw1, pw1, dw2, pw2 = (n.input[1] for n in conv_nodes)
    w = {name: _init(model, name) for name in (stem, dw1, pw1, dw2, pw2)}
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    # stem channel k and dw1 filter k are one group (8 groups, keep 4); pw1 channel k and dw2
    # filters 2k, 2k+1 are one group (16 groups, keep 8); pw2 alone (16, keep 8).
    assert result.units == {stem: (4, 8), dw1: (4, 8), pw1: (8, 16), dw2: (16, 32), pw2: (8, 16)}
    keep1 = _top_rows((_row_l1(w[stem]) + _row_l1(w[dw1])) / (27 + 9), 4)
    dw2_l1 = _row_l1(w[dw2]).reshape(16, 2).sum(axis=1)
    keep2 = _top_rows((_row_l1(w[pw1]) + dw2_l1) / (8 + 2 * 9), 8)
    keep_dw2 = np.stack([2 * keep2, 2 * keep2 + 1], axis=1).reshape(-1)
    keep3 = _top_rows(_row_l1(w[pw2]), 8)

    out_nodes = [n for n in result.model.graph.node if n.op_type == "Conv"]
    assert [_attr(n, "group") for n in out_nodes] == [1, 4, 1, 8, 1]  # the kept input channels
    assert np.array_equal(_init(result.model, stem), w[stem][keep1])
    assert np.array_equal(_init(result.model, dw1), w[dw1][keep1])  # (4, 1, 3, 3)
    assert np.array_equal(_init(result.model, pw1), w[pw1][np.ix_(keep2, keep1)])
    assert _init(result.model, dw2).shape == (8 * 2, 1, 3, 3)  # (kept * multiplier, 1, k, k)
    assert np.array_equal(_init(result.model, dw2), w[dw2][keep_dw2])
    assert np.array_equal(_init(result.model, pw2), w[pw2][np.ix_(keep3, keep_dw2)])
    assert _init(result.model, "fc.weight").shape == (5, 8)
    # Before: 8*27+8, 8*9+8, 16*8+16, 32*9+32, 16*32+16, 5*16+5.
    assert result.compaction.params_before == 224 + 80 + 144 + 320 + 528 + 85 == 1381
    # After: 4*27+4, 4*9+4, 8*4+8, 16*9+16, 8*16+8, 5*8+5.
    assert result.compaction.params_after == 112 + 40 + 40 + 160 + 136 + 45 == 533
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    _assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 3. Split along channels: sizes as an attribute (opset 11), an input (13), num_outputs (18)

SCALES = np.array([8.0, 1, 7, 2, 6, 3, 5, 4])
"""Mean |w| of the 8 filters of ``w0``: at 0.5 the four largest stay, channels 0, 2, 4, 6."""
SPLIT_FORMS = {
    # form: (opset, sizes before, kept per branch)
    "attribute": (11, [2, 2, 4], [1, 1, 2]),  # {0,1} {2,3} {4,5,6,7}
    "input": (13, [2, 2, 4], [1, 1, 2]),
    "num_outputs": (18, [3, 3, 2], [2, 1, 1]),  # ceil(8/3) = 3: {0,1,2} {3,4,5} {6,7}
}


def _split_model(form: str, merge: str) -> onnx.ModelProto:
    """x -> Conv w0 (8) -> Split in 3 -> Conv b_i (4 each) -> Concat or Add -> Conv f -> y."""
    opset, sizes, _ = SPLIT_FORMS[form]
    rng = np.random.default_rng(0)
    inits = {"w0": SCALES[:, None, None, None] * rng.choice([-1.0, 1.0], (8, 3, 1, 1))}
    inits["c0"] = rng.normal(size=8)
    outs = ["s0", "s1", "s2"]
    if form == "attribute":
        split = helper.make_node("Split", ["h"], outs, axis=1, split=sizes)
    elif form == "input":
        inits["sizes"] = np.array(sizes, np.int64)
        split = helper.make_node("Split", ["h", "sizes"], outs, axis=1)
    else:
        split = helper.make_node("Split", ["h"], outs, axis=1, num_outputs=3)
    nodes = [helper.make_node("Conv", ["x", "w0", "c0"], ["h"]), split]
    for i, size in enumerate(sizes):
        inits[f"b{i}"] = rng.normal(size=(4, size, 1, 1))
        inits[f"bb{i}"] = rng.normal(size=4)
        nodes.append(helper.make_node("Conv", [f"s{i}", f"b{i}", f"bb{i}"], [f"t{i}"]))
        nodes.append(helper.make_node("Relu", [f"t{i}"], [f"r{i}"]))
    if merge == "concat":
        nodes.append(helper.make_node("Concat", ["r0", "r1", "r2"], ["m"], axis=1))
        inits["f"] = rng.normal(size=(3, 12, 1, 1))
    else:
        nodes.append(helper.make_node("Add", ["r0", "r1"], ["m01"]))
        nodes.append(helper.make_node("Add", ["m01", "r2"], ["m"]))
        inits["f"] = rng.normal(size=(3, 4, 1, 1))
    inits["fb"] = rng.normal(size=3)
    nodes.append(helper.make_node("Conv", ["m", "f", "fb"], ["y"]))
    return _model(nodes, {"x": [2, 3, 5, 5]}, {"y": [2, 3, 5, 5]}, inits, opset)


def _split_sizes(model: onnx.ModelProto) -> list[int]:
    node = _node(model, "Split")
    assert _attr(node, "num_outputs") is None  # sizes that no longer divide evenly are explicit
    if len(node.input) > 1 and node.input[1]:
        return _init(model, node.input[1]).tolist()
    return list(_attr(node, "split"))


@pytest.mark.parametrize("merge", ["concat", "add"])
@pytest.mark.parametrize("form", sorted(SPLIT_FORMS))
def test_split_sizes_follow_the_kept_channels_of_each_branch(form, merge):
    model = _split_model(form, merge)
    onnx.checker.check_model(model, full_check=True)
    _, _, kept = SPLIT_FORMS[form]
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    # w0 keeps 4 of 8; each branch conv keeps 2 of 4 (concat: three layers; add: one layer whose
    # groups hold a filter of each branch); f's outputs are the graph's.
    assert result.units == {"w0": (4, 8), "b0": (2, 4), "b1": (2, 4), "b2": (2, 4)}
    assert np.array_equal(_init(result.model, "w0"), _init(model, "w0")[[0, 2, 4, 6]])
    assert _split_sizes(result.model) == kept
    for i, k in enumerate(kept):
        assert _init(result.model, f"b{i}").shape == (2, k, 1, 1)
    f_in = 6 if merge == "concat" else 2
    assert _init(result.model, "f").shape == (3, f_in, 1, 1)
    # w0 4*3+4, branches 2*k_i+2 (sum k_i = 4), f 3*f_in+3, plus the 3 split sizes if an input.
    sizes_input = 3 if len(_node(result.model, "Split").input) > 1 else 0
    expected = 16 + (2 * 4 + 6) + 3 * f_in + 3 + sizes_input
    assert result.compaction.params_after == expected == _params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 5, 5)).astype(np.float32)
    _assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 4. Reshape to [N, C*H*W] between a conv and a Gemm


@pytest.mark.parametrize(
    ("target", "expected"),
    [([2, 64], [2, 32]), ([0, -1], [0, -1]), ([-1, 64], [-1, 32])],
)
def test_reshape_target_and_gemm_follow_the_kept_channels(target, expected):
    rng = np.random.default_rng(0)
    # Filter mean |w| 1, 4, 2, 3: at 0.5 channels 1 and 3 stay.
    w = np.array([1.0, 4, 2, 3])[:, None, None, None] * rng.choice([-1.0, 1.0], (4, 3, 3, 3))
    inits = {
        "w": w,
        "wb": rng.normal(size=4),
        "shape": np.array(target, np.int64),
        "g": rng.normal(size=(5, 64)),
        "gb": rng.normal(size=5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "wb"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "g", "gb"], ["y"], transB=1),
    ]
    model = _model(nodes, {"x": [2, 3, 4, 4]}, {"y": [2, 5]}, inits)
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    assert result.units == {"w": (2, 4)}
    assert _init(result.model, "shape").tolist() == expected
    # Channel c spreads over features 16c .. 16c+15 (H*W = 16): the Gemm keeps those columns.
    columns = np.concatenate([np.arange(16 * c, 16 * c + 16) for c in (1, 3)])
    assert np.array_equal(_init(result.model, "g"), inits["g"].astype(np.float32)[:, columns])
    # conv 2*27+2, shape 2, gemm 5*32+5 (before: 4*27+4, 2, 5*64+5).
    assert result.compaction.params_before == 112 + 2 + 325
    assert result.compaction.params_after == 56 + 2 + 165 == _params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)
    _assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 5. What blocks a group: a graph output, an unknown op, a shared weight, a graph input


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
    elif case == "transpose":
        nodes.append(helper.make_node("Transpose", ["h"], ["u"], perm=[0, 1, 3, 2]))
    elif case == "custom_domain":
        nodes.append(helper.make_node("Gelu", ["h"], ["u"], domain="com.microsoft"))
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
    return _model(nodes, inputs, outputs, inits, domains=domains)


@pytest.mark.parametrize(
    "case", ["graph_output", "transpose", "custom_domain", "shared_weight", "residual_input"]
)
def test_blocked_units_stay(case):
    model = _blocked_model(case)
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    assert result.units == {"b": (3, 6)}
    for name in ("a", "ab") + (("s",) if case == "shared_weight" else ()):
        assert np.array_equal(_init(result.masked, name), _init(model, name))
        assert np.array_equal(_init(result.model, name), _init(model, name))
    assert _init(result.model, "b").shape == (3, 4, 1, 1)
    assert _init(result.model, "c").shape == (3, 3, 1, 1)
    rng = np.random.default_rng(1)
    feed = {"x": rng.normal(size=(2, 3, 5, 5)).astype(np.float32)}
    if case == "residual_input":
        feed["r"] = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    _assert_pruned_like_masked(result, feed)


# ---------------------------------------------------------------------------------------------
# 6. A residual channel that only carries BN biases: removed, its constant folded


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
    model = _model(nodes, {"x": [2, 3, 6, 6]}, {"y": [2, 3, 6, 6]}, inits)
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
    assert np.array_equal(_init(m, "A"), inits["A"][rest])
    assert np.array_equal(_init(m, "sb"), inits["sb"][rest])
    # B reads channel 1 of a, C and D channel 1 of t: each bias takes weight * constant.
    expected_bB = p["bB"][rest] + p["B"][rest, 1, 0, 0] * a1
    assert np.allclose(_init(m, "bB"), expected_bB, rtol=1e-6, atol=1e-6)
    assert np.array_equal(_init(m, "B"), inits["B"][np.ix_(rest, rest)])
    assert np.allclose(_init(m, "bC"), p["bC"] + p["C"][:, 1, 0, 0] * t1, rtol=1e-6, atol=1e-6)
    d_node = next(n for n in m.graph.node if n.output[0] == "d")
    assert len(d_node.input) == 3
    assert np.allclose(_init(m, d_node.input[2]), p["D"][:, 1, 0, 0] * t1, rtol=1e-6, atol=1e-6)
    assert _init(m, "C").shape == _init(m, "D").shape == (5, 3, 1, 1)
    # Before: A 4*27+4, BNs 2*16, B 16+4, C 20+5, D 20, E 30+3.
    assert result.params_before == 112 + 32 + 20 + 25 + 20 + 33 == 242
    # After: A 3*27+3, BNs 2*12, B 9+3, C 15+5, D 15 + 5 (new bias), E 33.
    assert result.params_after == 84 + 24 + 12 + 20 + 20 + 33 == 193 == _params(m)
    onnx.checker.check_model(m, full_check=True)
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    _assert_close(_run(model, {"x": x}), _run(m, {"x": x}))


def test_compact_folds_a_constant_dense_channel_into_every_later_layer():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _dense_like(torch)
    _randomize_batchnorms(torch, net)
    with torch.no_grad():
        net.stem.weight[[1, 5]] = 0  # stem channels 1 and 5 hold their biases
        net.layers[1][2].weight[2] = 0  # layer 1's channel 2: concat channel 8 + 4 + 2 = 14
        for bn in (net.layers[0][0], net.layers[1][0], net.layers[2][0], net.trans[0]):
            # the constant channels it sees stay on past its ReLU
            bn.bias[[j for j in (1, 5, 14) if j < bn.num_features]] = 2.0
    model = _export(torch, net, (2, 3, 8, 8))
    result = compact(model)

    assert result.removed == {"stem.weight": 2, "layers.1.2.weight": 1}
    assert result.folded == result.removed
    stem_bias = _init(model, "stem.bias").astype(np.float64)
    held = {1: stem_bias[1], 5: stem_bias[5], 14: float(_init(model, "layers.1.2.bias")[2])}

    def added(conv: str, bn: str, channels: list[int]) -> np.ndarray:
        """What the constant ``channels`` add to the conv's bias through its BN and ReLU."""
        p = {k: _init(model, f"{bn}.{k}").astype(np.float64) for k in ("weight", "bias")}
        p |= {k: _init(model, f"{bn}.running_{k}").astype(np.float64) for k in ("mean", "var")}
        c = np.array([held[j] for j in channels])
        z = (c - p["mean"][channels]) / np.sqrt(p["var"][channels] + 1e-5)
        on = np.maximum(z * p["weight"][channels] + p["bias"][channels], 0.0)
        return _init(model, f"{conv}.weight").astype(np.float64)[:, channels, 0, 0] @ on

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
        expected = _init(model, f"{conv}.bias") + delta
        if layer == "layers.1":
            expected = np.delete(expected, 2)
        assert np.allclose(_init(result.model, f"{conv}.bias"), expected, rtol=1e-5, atol=1e-5)
    # After: stem 6*27+6, BNs 4*(6+10+13+17), layers 4*6+4, 3*10+3, 4*13+4, trans 8*17+8, fc 45.
    assert result.params_after == 168 + 184 + 28 + 33 + 56 + 144 + 45 == 658
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    _assert_close(_run(model, {"x": x}), _run(result.model, {"x": x}))


# ---------------------------------------------------------------------------------------------
# 7. IR 3 / opset 9: every initializer is also a graph input


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
            assert list(_init(result.model, name).shape) == shape
    # A 3*27+3, BN 4*3, B 2*3+2, G 5*2+5.
    assert result.compaction.params_after == 84 + 12 + 8 + 15 == _params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    _assert_pruned_like_masked(result, {"x": x})


# ---------------------------------------------------------------------------------------------
# 8. The light ResNet-50 and DenseNet-121 with random weights


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
    assert after == _params(result.model)
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    feed = {convs[0].input[0]: x}  # the image the first conv reads
    expected = _run(_with_logits(result.masked), feed)
    got = _run(_with_logits(result.model), feed)
    assert len(got) == (2 if name == "resnet50" else 1)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-5 * float(np.abs(a).max())
