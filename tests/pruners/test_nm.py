"""N:M masks on the weight layouts of real layers, checked against a brute-force top-N per group.

Each case builds a one-layer model so the ``Contract`` comes from ``build_graph``, and names the
input axis of its weight by hand: Gemm(transB=1) [N, K] -> axis 1, MatMul [K, N] -> axis 0,
Conv [O, C/G, kh, kw] -> axis 1, ConvTranspose [C, O/G, kh, kw] -> axis 0.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import InvalidOptionError
from onnxprune.graph.build import build_graph
from onnxprune.pruners.nm import nm_masks, parse_nm


def _model(node: onnx.NodeProto, x: list[int], y: list[int], w: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "one_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        [numpy_helper.from_array(w.astype(np.float32), "W")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


# name -> (model, input axis of its weight)
CASES = {
    "gemm_transB": (
        _model(
            helper.make_node("Gemm", ["x", "W"], ["y"], transB=1), [2, 8], [2, 3], np.ones((3, 8))
        ),
        1,
    ),
    "matmul": (
        _model(helper.make_node("MatMul", ["x", "W"], ["y"]), [2, 12], [2, 5], np.ones((12, 5))),
        0,
    ),
    "conv": (
        _model(
            helper.make_node("Conv", ["x", "W"], ["y"]),
            [1, 8, 4, 4],
            [1, 3, 2, 2],
            np.ones((3, 8, 3, 3)),
        ),
        1,
    ),
    "grouped_conv": (
        # group 2: C = 16, C/G = 8 per output channel.
        _model(
            helper.make_node("Conv", ["x", "W"], ["y"], group=2),
            [1, 16, 3, 3],
            [1, 4, 2, 2],
            np.ones((4, 8, 2, 2)),
        ),
        1,
    ),
    "conv_transpose": (
        _model(
            helper.make_node("ConvTranspose", ["x", "W"], ["y"]),
            [1, 8, 2, 2],
            [1, 3, 3, 3],
            np.ones((8, 3, 2, 2)),
        ),
        0,
    ),
}


def _layer(case: str):
    model, axis = CASES[case]
    (layer,) = build_graph(model).layers
    return layer, axis


def _brute_force(scores: np.ndarray, axis: int, n: int, m: int) -> np.ndarray:
    """Per position off ``axis``, per group of m along it: keep the n best (ties: lower index)."""
    moved = np.moveaxis(scores, axis, -1)
    keep = np.zeros(moved.shape, dtype=bool)
    for pos in itertools.product(*(range(d) for d in moved.shape[:-1])):
        for start in range(0, moved.shape[-1], m):
            group = [(-float(moved[(*pos, start + i)]), i) for i in range(m)]
            for _, i in sorted(group)[:n]:
                keep[(*pos, start + i)] = True
    return np.moveaxis(keep, -1, axis)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 4), (1, 2)])
def test_each_group_keeps_its_top_n(case: str, n: int, m: int) -> None:
    layer, axis = _layer(case)
    rng = np.random.default_rng([sorted(CASES).index(case), n, m])
    scores = rng.random(layer.shape)
    mask = nm_masks({layer.name: scores}, {layer.name: layer.contract}, n, m)[layer.name]
    assert mask.dtype == bool
    assert mask.shape == layer.shape
    # Exactly n kept in every group of m consecutive weights along the input axis.
    per_group = np.moveaxis(mask, axis, -1).reshape(*np.delete(mask.shape, axis), -1, m)
    assert (per_group.sum(axis=-1) == n).all()
    np.testing.assert_array_equal(mask, _brute_force(scores, axis, n, m))


@pytest.mark.parametrize("case", sorted(CASES))
def test_ties_keep_the_lower_index(case: str) -> None:
    layer, axis = _layer(case)
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 3, layer.shape).astype(np.float64)  # many ties
    mask = nm_masks({layer.name: scores}, {layer.name: layer.contract}, 2, 4)[layer.name]
    np.testing.assert_array_equal(mask, _brute_force(scores, axis, 2, 4))
    equal = nm_masks({layer.name: np.ones(layer.shape)}, {layer.name: layer.contract}, 1, 4)
    # All equal: the first of every four along the input axis survives.
    first = np.moveaxis(equal[layer.name], axis, 0)
    assert first[0::4].all()
    assert not first[1::4].any()


def test_gemm_trans_b_groups_run_along_k_not_n() -> None:
    # W stored [N=3, K=8]; output unit j keeps 2 of inputs 0-3 and 2 of inputs 4-7.
    layer, _ = _layer("gemm_transB")
    scores = np.tile(np.arange(8.0), (3, 1))  # larger input index = larger score
    mask = nm_masks({"W": scores}, {"W": layer.contract}, 2, 4)["W"]
    expected_row = [False, False, True, True, False, False, True, True]
    np.testing.assert_array_equal(mask, np.tile(expected_row, (3, 1)))


def test_indivisible_input_raises_or_stays_dense() -> None:
    model = _model(helper.make_node("MatMul", ["x", "W"], ["y"]), [2, 6], [2, 5], np.ones((6, 5)))
    (layer,) = build_graph(model).layers
    scores, kinds = {"W": np.random.default_rng(0).random((6, 5))}, {"W": layer.contract}
    with pytest.raises(InvalidOptionError, match=r"'W'.*input size 6.*M=4.*--skip-indivisible"):
        nm_masks(scores, kinds, 2, 4)
    dense = nm_masks(scores, kinds, 2, 4, skip_indivisible=True)["W"]
    assert dense.dtype == bool
    assert dense.all()
    # The same layer is masked when it divides: 6 = 3 groups of 2.
    assert nm_masks(scores, kinds, 1, 2)["W"].sum() == 3 * 5


def test_skip_indivisible_masks_the_other_layers() -> None:
    bad = build_graph(
        _model(helper.make_node("MatMul", ["x", "W"], ["y"]), [2, 6], [2, 5], np.ones((6, 5)))
    ).layers[0]
    good, _ = _layer("matmul")
    rng = np.random.default_rng(1)
    masks = nm_masks(
        {"bad": rng.random((6, 5)), "good": rng.random((12, 5))},
        {"bad": bad.contract, "good": good.contract},
        2,
        4,
        skip_indivisible=True,
    )
    assert masks["bad"].all()
    assert masks["good"].sum() == 12 * 5 // 2


def test_grouped_conv_transpose_groups_do_not_straddle_groups() -> None:
    # [C=8, O/G=1, 1, 1] with group 4: each group reads 2 input channels, so 2:4 does not fit
    # although C = 8 is a multiple of 4; with group 2 (4 channels each) it does.
    def contract(group: int):
        node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], group=group)
        model = _model(node, [1, 8, 2, 2], [1, group, 2, 2], np.ones((8, 1, 1, 1)))
        return build_graph(model).layers[0].contract

    scores = {"W": np.arange(8.0).reshape(8, 1, 1, 1)}
    with pytest.raises(InvalidOptionError, match="input size 2"):
        nm_masks(scores, {"W": contract(4)}, 2, 4)
    mask = nm_masks(scores, {"W": contract(2)}, 2, 4)["W"].ravel()
    assert mask.tolist() == [False, False, True, True] * 2


def test_missing_kind_and_bad_nm_are_refused() -> None:
    layer, _ = _layer("matmul")
    with pytest.raises(InvalidOptionError, match="'other'"):
        nm_masks({"other": np.ones((12, 5))}, {"W": layer.contract}, 2, 4)
    for n, m in [(0, 4), (4, 4), (5, 4), (-1, 4), (2.0, 4)]:
        with pytest.raises(InvalidOptionError, match="0 < N < M"):
            nm_masks({"W": np.ones((12, 5))}, {"W": layer.contract}, n, m)


def test_parse_nm() -> None:
    assert parse_nm("2:4") == (2, 4)
    assert parse_nm(" 1:8 ") == (1, 8)
    for bad in ["4:2", "0:4", "2:2", "2", "a:b", "2:4:8", "2.0:4", "-1:4", "", ":4"]:
        with pytest.raises(InvalidOptionError, match=r"0 < N < M") as info:
            parse_nm(bad)
        assert "\n" not in str(info.value)
