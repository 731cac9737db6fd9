"""Dependency groups on the shapes networks take: dense concats, depthwise convs, splits along
channels in their three opset forms, and reshapes before a Gemm.

Every case runs the pruned model on ONNX Runtime against the masked one and checks it with
``onnx.checker``; expected shapes, kept filters and parameter counts are worked out by hand in the
comments and recomputed with numpy where they depend on random weights.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, shape_inference

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, export, init, params
from tests.structured._group_models import dense_like, graph_model, randomize_batchnorms

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


# ---------------------------------------------------------------------------------------------
# helpers


def _node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == op_type)


def _attr(node: onnx.NodeProto, name: str):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _top_rows(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, in order (what L1 pruning keeps)."""
    return np.sort(np.argsort(score, kind="stable")[score.size - k :])


def _row_l1(w: np.ndarray) -> np.ndarray:
    return np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# 1. DenseNet-like: every layer reads the concat of all features before it


def test_densenet_concats_shrink_to_the_kept_channels_of_their_inputs():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = dense_like(torch)
    randomize_batchnorms(torch, net)
    model = export(torch, net, (2, 3, 8, 8))
    layer_convs = [f"layers.{i}.2.weight" for i in range(3)]
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    # ceil(0.5 * n) per layer; the classifier's outputs are the graph's, so it keeps them.
    assert result.units == {
        "stem.weight": (4, 8),
        **{name: (2, 4) for name in layer_convs},
        "trans.2.weight": (4, 8),
    }
    # Each group is one filter: the kept filters are the top mean |w| rows of each layer.
    kept = {name: _top_rows(_row_l1(init(model, name)), k) for name, (k, _) in result.units.items()}
    # The channels the i-th concat keeps: the stem's, then those of layer j at offset 8 + 4j.
    concat_kept = [kept["stem.weight"]]
    for j, name in enumerate(layer_convs):
        concat_kept.append(np.concatenate([concat_kept[-1], 8 + 4 * j + kept[name]]))
    bn_names = [f"layers.{i}.0" for i in range(3)] + ["trans.0"]
    for bn, channels, n in zip(bn_names, concat_kept, [4, 6, 8, 10], strict=True):
        assert channels.size == n  # 4 from the stem, 2 more per layer
        for p in ("weight", "bias", "running_mean", "running_var"):
            original = init(model, f"{bn}.{p}")
            assert np.array_equal(init(result.model, f"{bn}.{p}"), original[channels])
    for name, channels in zip([*layer_convs, "trans.2.weight"], concat_kept, strict=True):
        w = init(model, name)
        assert np.array_equal(init(result.model, name), w[np.ix_(kept[name], channels)])
    fc = init(result.model, "fc.weight")
    assert np.array_equal(fc, init(model, "fc.weight")[:, kept["trans.2.weight"]])

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
    assert params(result.model) == 335
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


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
    randomize_batchnorms(torch, net)
    model = export(torch, net, (2, 3, 8, 8))  # the exporter fuses every BN into its conv
    conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    assert [_attr(n, "group") for n in conv_nodes] == [1, 8, 1, 16, 1]
    stem, dw1, pw1, dw2, pw2 = (n.input[1] for n in conv_nodes)
    w = {name: init(model, name) for name in (stem, dw1, pw1, dw2, pw2)}
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
    assert np.array_equal(init(result.model, stem), w[stem][keep1])
    assert np.array_equal(init(result.model, dw1), w[dw1][keep1])  # (4, 1, 3, 3)
    assert np.array_equal(init(result.model, pw1), w[pw1][np.ix_(keep2, keep1)])
    assert init(result.model, dw2).shape == (8 * 2, 1, 3, 3)  # (kept * multiplier, 1, k, k)
    assert np.array_equal(init(result.model, dw2), w[dw2][keep_dw2])
    assert np.array_equal(init(result.model, pw2), w[pw2][np.ix_(keep3, keep_dw2)])
    assert init(result.model, "fc.weight").shape == (5, 8)
    # Before: 8*27+8, 8*9+8, 16*8+16, 32*9+32, 16*32+16, 5*16+5.
    assert result.compaction.params_before == 224 + 80 + 144 + 320 + 528 + 85 == 1381
    # After: 4*27+4, 4*9+4, 8*4+8, 16*9+16, 8*16+8, 5*8+5.
    assert result.compaction.params_after == 112 + 40 + 40 + 160 + 136 + 45 == 533
    x = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


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
    return graph_model(nodes, {"x": [2, 3, 5, 5]}, {"y": [2, 3, 5, 5]}, inits, opset)


def _split_sizes(model: onnx.ModelProto) -> list[int]:
    node = _node(model, "Split")
    assert _attr(node, "num_outputs") is None  # sizes that no longer divide evenly are explicit
    if len(node.input) > 1 and node.input[1]:
        return init(model, node.input[1]).tolist()
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
    assert np.array_equal(init(result.model, "w0"), init(model, "w0")[[0, 2, 4, 6]])
    assert _split_sizes(result.model) == kept
    for i, k in enumerate(kept):
        assert init(result.model, f"b{i}").shape == (2, k, 1, 1)
    f_in = 6 if merge == "concat" else 2
    assert init(result.model, "f").shape == (3, f_in, 1, 1)
    # w0 4*3+4, branches 2*k_i+2 (sum k_i = 4), f 3*f_in+3, plus the 3 split sizes if an input.
    sizes_input = 3 if len(_node(result.model, "Split").input) > 1 else 0
    expected = 16 + (2 * 4 + 6) + 3 * f_in + 3 + sizes_input
    assert result.compaction.params_after == expected == params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 5, 5)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


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
    model = graph_model(nodes, {"x": [2, 3, 4, 4]}, {"y": [2, 5]}, inits)
    result = structured_prune(model, sparsity=0.5, criterion="l1")

    assert result.units == {"w": (2, 4)}
    assert init(result.model, "shape").tolist() == expected
    # Channel c spreads over features 16c .. 16c+15 (H*W = 16): the Gemm keeps those columns.
    columns = np.concatenate([np.arange(16 * c, 16 * c + 16) for c in (1, 3)])
    assert np.array_equal(init(result.model, "g"), inits["g"].astype(np.float32)[:, columns])
    # conv 2*27+2, shape 2, gemm 5*32+5 (before: 4*27+4, 2, 5*64+5).
    assert result.compaction.params_before == 112 + 2 + 325
    assert result.compaction.params_after == 56 + 2 + 165 == params(result.model)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})


@pytest.mark.parametrize("opset", [11, 13])  # Squeeze/Unsqueeze axes: attribute, then input
def test_nhwc_transposes_and_squeezes_carry_units(opset):
    """A TensorFlow-style export: NHWC tensors, a Transpose around each Conv, a bias added on the
    last axis, a Squeeze after global pooling and an Unsqueeze/Squeeze pair before the head."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 3, 3, 3))
    w1 *= np.arange(1, 9)[:, None, None, None]  # filters 0..3 have the smallest L1 norms
    w2 = rng.normal(size=(6, 8, 1, 1))
    w2 *= np.array([1, 6, 2, 5, 3, 4])[:, None, None, None]
    axes = {"axes": [2, 3]} if opset < 13 else {}
    axes_in = [] if opset < 13 else ["hw"]
    one = {"axes": [1]} if opset < 13 else {}
    one_in = [] if opset < 13 else ["one"]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c1"], ["h1"], perm=[0, 2, 3, 1]),  # NHWC: units last
        helper.make_node("Add", ["h1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["r1t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["r1t", "w2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Squeeze", ["p", *axes_in], ["s"], **axes),  # [N, 6]
        helper.make_node("Unsqueeze", ["s", *one_in], ["u"], **one),  # [N, 1, 6]
        helper.make_node("Squeeze", ["u", *one_in], ["f"], **one),
        helper.make_node("Gemm", ["f", "head"], ["y"], transB=1),
    ]
    inits = {
        "w1": w1,
        "b1": rng.normal(size=8),
        "w2": w2,
        "head": rng.normal(size=(4, 6)),
        "hw": np.array([2, 3], np.int64),
        "one": np.array([1], np.int64),
    }
    model = graph_model(nodes, {"x": [2, 5, 5, 3]}, {"y": [2, 4]}, inits, opset=opset)
    result = structured_prune(model, sparsity=0.5)
    assert result.units == {"w1": (4, 8), "w2": (3, 6)}
    assert init(result.model, "b1").shape == (4,)  # the NHWC bias follows the kept channels
    assert np.array_equal(init(result.model, "w1"), w1[4:].astype(np.float32))
    assert init(result.model, "head").shape == (4, 3)
    feed = {"x": rng.normal(size=(2, 5, 5, 3)).astype(np.float32)}
    assert_pruned_like_masked(result, feed)


def test_channel_shuffle_keeps_the_same_channels_in_every_group():
    """Conv (8) -> Reshape [N, 2, 4, H, W] -> Transpose(0, 2, 1, 3, 4) -> Reshape [N, 8, H, W]
    -> Conv: the k-th channel of both groups goes together, the targets follow."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 3, 1, 1))
    w1 *= np.array([1, 9, 2, 8, 3, 7, 4, 6])[:, None, None, None]  # per group: 1 9 2 8 | 3 7 4 6
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("Reshape", ["c", "split"], ["s"]),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "merged"], ["m"]),
        helper.make_node("Conv", ["m", "w2"], ["y"]),
    ]
    inits = {
        "w1": w1,
        "split": np.array([2, 2, 4, 3, 3], np.int64),
        "merged": np.array([2, 8, 3, 3], np.int64),
        "w2": rng.normal(size=(5, 8, 1, 1)),
    }
    model = graph_model(nodes, {"x": [2, 3, 3, 3]}, {"y": [2, 5, 3, 3]}, inits)
    result = structured_prune(model, sparsity=0.5)
    assert result.units == {"w1": (4, 8)}
    # group scores (mean |w| over the k-th filter of both groups) rank k = 1 and 3 highest
    kept = np.array([1, 3, 5, 7])
    assert np.array_equal(init(result.model, "w1"), w1[kept].astype(np.float32))
    assert init(result.model, "split").tolist() == [2, 2, 2, 3, 3]
    assert init(result.model, "merged").tolist() == [2, 4, 3, 3]
    # shuffled order is channel k * 2 + g for unit (g, k): w2 keeps columns 2, 3, 6, 7
    w2 = inits["w2"].astype(np.float32)
    assert np.array_equal(init(result.model, "w2"), w2[:, [2, 3, 6, 7]])
    assert_pruned_like_masked(result, {"x": rng.normal(size=(2, 3, 3, 3)).astype(np.float32)})
