"""SparseGPT through ``onnxprune.prune``: layer views, Hessians, sequential re-fitting, digits.

Every reference is computed here in numpy from the calibration data: the layer outputs as
matrix products of the views, the least-squares optimum of a single Gemm, the second layer's
Hessian from the first layer's pruned output.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxprune
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.build import build_graph
from onnxprune.pruners.layer_views import input_columns, weight_from_rows, weight_rows
from onnxprune.pruners.obs import DAMPING, inverse_factor, prune_matrix
from onnxprune.pruners.scores import sparsegpt as sparsegpt_module
from onnxprune.pruners.scores.sparsegpt import hessians
from onnxprune.pruners.targets import EFFECTIVE_SLACK
from onnxprune.runtime import create_session
from tests.helpers import single_io_model

RNG = np.random.default_rng(3)
MODELS = __import__("pathlib").Path(__file__).resolve().parents[2] / "models"


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session, _ = create_session(model.SerializeToString())
    return session.run(None, feeds)[0]


def _damped(h: np.ndarray) -> np.ndarray:
    return h + DAMPING * np.mean(np.diag(h)) * np.eye(h.shape[0])


# Layers whose view as W_rows @ X_cols must reproduce the output ONNX Runtime computes.
VIEWS = {
    "gemm_transB": (
        [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)],
        [5, 6],
        {"W": RNG.standard_normal((4, 6))},
    ),
    "gemm_transA": (
        [helper.make_node("Gemm", ["x", "W"], ["y"], transA=1)],
        [6, 5],
        {"W": RNG.standard_normal((6, 4))},
    ),
    "matmul_weight_left": (
        [helper.make_node("MatMul", ["W", "x"], ["y"])],
        [2, 6, 3],
        {"W": RNG.standard_normal((4, 6))},
    ),
    "conv_transpose_grouped": (
        [
            helper.make_node(
                "ConvTranspose",
                ["x", "W"],
                ["y"],
                group=2,
                strides=[2, 1],
                pads=[1, 0, 0, 1],
                output_padding=[1, 0],
                dilations=[1, 2],
            )
        ],
        [2, 4, 3, 4],
        {"W": RNG.standard_normal((4, 3, 3, 2))},
    ),
    "conv_grouped_strided": (
        [helper.make_node("Conv", ["x", "W"], ["y"], group=2, strides=[2, 1], pads=[1, 0, 0, 1])],
        [2, 4, 5, 4],
        {"W": RNG.standard_normal((6, 2, 3, 2))},
    ),
}


@pytest.mark.parametrize("case", sorted(VIEWS))
def test_views_reproduce_the_layer_output(case: str) -> None:
    nodes, x_shape, inits = VIEWS[case]
    model = single_io_model(nodes, x_shape, None, inits)
    layer = build_graph(model).layers[0]
    x = RNG.standard_normal(x_shape).astype(np.float32)
    y = _run(model, {"x": x}).astype(np.float64)
    w = inits["W"].astype(np.float32).astype(np.float64)
    rows = weight_rows(layer, layer.contract.source.to_consumed(w, layer.shape))
    (columns,) = list(input_columns(layer, x, y.shape[2:]))
    products = [r @ c for r, c in zip(rows, columns, strict=True)]
    if layer.contract.kind != "matmul":  # [O, N * P] back to [N, O, *spatial]
        out = np.concatenate(products).reshape(y.shape[1], y.shape[0], *y.shape[2:])
        np.testing.assert_allclose(np.moveaxis(out, 0, 1), y, rtol=1e-5, atol=1e-5)
    else:  # output units along Contract.y_axis, samples in the order of the other axes
        moved = np.moveaxis(y, layer.contract.y_axis, 0)
        np.testing.assert_allclose(products[0], moved.reshape(moved.shape[0], -1), atol=1e-5)
    back = weight_from_rows(layer, rows, layer.shape)
    np.testing.assert_array_equal(back, layer.contract.source.to_consumed(w, layer.shape))


def test_conv_hessian_is_the_im2col_one_with_nm_order() -> None:
    # Conv 3x3, C=2, pad 1: columns are (tap, channel), tap-major. Unfold by hand with loops.
    w = RNG.standard_normal((3, 2, 3, 3))
    model = single_io_model(
        [helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
        [4, 2, 4, 4],
        None,
        {"W": w},
    )
    x = RNG.standard_normal((4, 2, 4, 4)).astype(np.float32)
    graph = build_graph(model)
    (h,) = hessians(model, graph, {"x": x}, ["W"])["W"]
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = [
        [padded[n, c, i + a, j + b] for a in range(3) for b in range(3) for c in range(2)]
        for n in range(4)
        for i in range(4)
        for j in range(4)
    ]
    unfolded = np.array(cols).T  # [taps * C, samples]
    np.testing.assert_allclose(h, 2 * unfolded @ unfolded.T, rtol=1e-10)


# A single Gemm (transB=1): y = x W^T, W [N=3, K=6], calibration x [40, 6].
GEMM_W = RNG.standard_normal((3, 6))
GEMM_W[:, :2] *= 1e-3  # the cheapest columns to remove: SparseGPT's mask takes exactly them
GEMM = single_io_model(
    [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], ["N", 6], ["N", 3], {"W": GEMM_W}
)
GEMM_X = (RNG.standard_normal((40, 6)) + 0.5).astype(np.float32)


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_single_gemm_equals_the_least_squares_optimum(allocation: str) -> None:
    result = onnxprune.prune(
        GEMM, sparsity=1 / 3, score="sparsegpt", allocation=allocation, calibration={"x": GEMM_X}
    )
    new = _weights(result.model)["W"].astype(np.float64)
    mask = result.masks["W"]
    assert not mask[:, :2].any() and mask[:, 2:].all()
    # min ||W X - W' X||^2 (+ the dampening) over W' supported on the kept columns 2..5.
    x = GEMM_X.astype(np.float64).T
    h = _damped(2 * x @ x.T)
    w = GEMM_W.astype(np.float32).astype(np.float64)
    optimum = w @ h[:, 2:] @ np.linalg.inv(h[2:, 2:])
    np.testing.assert_allclose(new[:, 2:], optimum, rtol=1e-5, atol=1e-6)
    assert (new[:, :2] == 0).all()
    assert result.report.direct_sparsity == pytest.approx(1 / 3)


def _two_layers() -> onnx.ModelProto:
    # x[N, 8] -> MatMul W1 [8, 12] -> Relu -> Gemm(W2 [5, 12], transB=1) -> y
    return single_io_model(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1),
        ],
        ["N", 8],
        ["N", 5],
        {"W1": RNG.standard_normal((8, 12)), "W2": RNG.standard_normal((5, 12))},
    )


def test_the_second_layer_is_fitted_on_the_pruned_first_layer() -> None:
    model = _two_layers()
    x = RNG.standard_normal((64, 8)).astype(np.float32)
    result = onnxprune.prune(
        model, sparsity=0.5, score="sparsegpt", allocation="uniform", calibration={"x": x}
    )
    pruned, dense = _weights(result.model), _weights(model)
    # Independent pass: the pruned first layer's output, in numpy.
    r = np.maximum(x.astype(np.float64) @ pruned["W1"].astype(np.float64), 0)
    h2 = 2 * r.T @ r
    removed = int((~result.masks["W2"]).sum())
    expected, keep = prune_matrix(
        dense["W2"].astype(np.float64), inverse_factor(h2), remove=removed
    )
    np.testing.assert_array_equal(result.masks["W2"], keep)
    np.testing.assert_allclose(pruned["W2"], expected, rtol=1e-4, atol=1e-5)
    # The dense model's activations would have given other weights: the check can tell.
    r_dense = np.maximum(x.astype(np.float64) @ dense["W1"].astype(np.float64), 0)
    other, _ = prune_matrix(
        dense["W2"].astype(np.float64), inverse_factor(2 * r_dense.T @ r_dense), remove=removed
    )
    assert not np.allclose(other, expected, atol=1e-3)


def test_a_hessian_budget_only_adds_passes(monkeypatch) -> None:
    # Three layers reading the same input (no order between them), each over budget: one pass
    # per layer, the same result as one pass for all.
    nodes = [helper.make_node("MatMul", ["x", f"W{i}"], [f"h{i}"]) for i in range(3)]
    nodes.append(helper.make_node("Sum", ["h0", "h1", "h2"], ["y"]))
    inits = {f"W{i}": RNG.standard_normal((6, 4)) for i in range(3)}
    model = single_io_model(nodes, ["N", 6], ["N", 4], inits)
    x = {"x": RNG.standard_normal((30, 6)).astype(np.float32)}
    whole = onnxprune.prune(model, sparsity=0.5, score="sparsegpt", calibration=x)
    monkeypatch.setattr(sparsegpt_module, "HESSIAN_BYTES", 1)
    split = onnxprune.prune(model, sparsity=0.5, score="sparsegpt", calibration=x)
    for name, value in _weights(whole.model).items():
        np.testing.assert_array_equal(_weights(split.model)[name], value)


def test_only_the_pruned_weights_change() -> None:
    model = _two_layers()
    model.graph.node[2].input.append("b")
    model.graph.initializer.append(numpy_helper.from_array(np.ones(5, np.float32), "b"))
    x = RNG.standard_normal((32, 8)).astype(np.float32)
    result = onnxprune.prune(
        model, sparsity=0.4, score="sparsegpt", exclude="W2", calibration={"x": x}
    )
    before, after = _weights(model), _weights(result.model)
    assert after["W2"].tobytes() == before["W2"].tobytes()
    assert after["b"].tobytes() == before["b"].tobytes()
    assert not np.array_equal(after["W1"][result.masks["W1"]], before["W1"][result.masks["W1"]])
    assert (after["W1"][~result.masks["W1"]] == 0).all()
    assert [n.SerializeToString() for n in result.model.graph.node] == [
        n.SerializeToString() for n in model.graph.node
    ]


def test_given_masks_stay_pruned() -> None:
    model = _two_layers()
    x = RNG.standard_normal((32, 8)).astype(np.float32)
    given = np.ones((8, 12), bool)
    given[:, 0] = False  # a whole output unit of W1
    result = onnxprune.prune(
        model,
        sparsity=0.3,
        score="sparsegpt",
        masks={"W1": given},
        calibration={"x": x},
    )
    assert not result.masks["W1"][:, 0].any()
    assert (_weights(result.model)["W1"][:, 0] == 0).all()
    assert result.report.direct_sparsity == pytest.approx(0.3, abs=1 / 156)


def _digits(name: str):
    model = onnx.load(MODELS / f"{name}.onnx")
    data = np.load(MODELS / "digits_test.npz")
    feed = model.graph.input[0].name
    return model, feed, data[feed]


@pytest.mark.parametrize(
    ("name", "allocation"),
    [("mlp_digits", "global"), ("mlp_digits", "uniform"), ("cnn_digits", "uniform")],
)
def test_digits_at_70_percent_sparsegpt_beats_magnitude(name: str, allocation: str) -> None:
    # Same allocation for both (the paper prunes every layer to the target); the error is over
    # all 450 samples, calibration on the first 200.
    model, feed, x = _digits(name)
    dense = _run(model, {feed: x})

    def error(**kwargs) -> float:
        pruned = onnxprune.prune(model, sparsity=0.7, allocation=allocation, **kwargs).model
        return float(np.mean((_run(pruned, {feed: x}) - dense) ** 2))

    calibration = {feed: x[:200]}
    assert error(score="sparsegpt", calibration=calibration) < error(score="magnitude")


def test_nm_pattern_holds_exactly_on_the_cnn() -> None:
    model, feed, x = _digits("cnn_digits")
    result = onnxprune.prune(
        model, nm="2:4", score="sparsegpt", skip_indivisible=True, calibration={feed: x[:64]}
    )
    written = _weights(result.model)
    layers = {layer.name: layer for layer in build_graph(model).layers}
    checked = 0
    for name, mask in result.masks.items():
        np.testing.assert_array_equal(written[name] != 0, mask)
        layer = layers[name]
        if layer.contract.kind == "conv":
            if mask.shape[1] % 4:  # the first conv reads one channel: left dense
                assert mask.all()
                continue
            runs = np.moveaxis(mask, 1, -1).reshape(-1, mask.shape[1] // 4, 4)
        else:  # Gemm transB=1: [N, K], runs along K
            runs = mask.reshape(mask.shape[0], -1, 4)
        assert (runs.sum(axis=-1) == 2).all()
        checked += 1
    assert checked == 4


@pytest.mark.parametrize(("name", "target"), [("mlp_digits", 0.8), ("cnn_digits", 0.8)])
def test_effective_target_is_reached_from_below(name: str, target: float) -> None:
    # The ranking's counts alone land SparseGPT's masks at 0.779 (MLP) and 0.793 (CNN); the
    # re-fits bisect the count to within EFFECTIVE_SLACK below the target.
    model, feed, x = _digits(name)
    result = onnxprune.prune(
        model, sparsity=target, effective=True, score="sparsegpt", calibration={feed: x[:100]}
    )
    reached = result.report.effective_sparsity
    assert target - EFFECTIVE_SLACK <= reached <= target
    assert not result.warnings
    written = _weights(result.model)
    for mask_name, mask in result.masks.items():
        np.testing.assert_array_equal(written[mask_name] != 0, mask)
    assert result.report.direct_sparsity < reached


def test_conv_transpose_is_pruned_and_refitted_exactly() -> None:
    # ConvTranspose [C=4, O/G=3, 2, 2], group 2, stride 2, 1:2: SparseGPT's re-fit of each
    # group equals the sequential dense solves on the Hessian of the scattered columns, built
    # here by hand with loops.
    w = RNG.standard_normal((4, 3, 2, 2))
    model = single_io_model(
        [helper.make_node("ConvTranspose", ["x", "W"], ["y"], group=2, strides=[2, 2])],
        ["N", 4, 3, 3],
        ["N", 6, 6, 6],
        {"W": w},
    )
    x = RNG.standard_normal((5, 4, 3, 3)).astype(np.float32)
    result = onnxprune.prune(model, nm="1:2", score="sparsegpt", calibration={"x": x})
    new = _weights(result.model)["W"].astype(np.float64)
    mask = result.masks["W"]
    w32 = w.astype(np.float32).astype(np.float64)
    x64 = x.astype(np.float64)
    for g in range(2):
        # columns (tap, c) of group g: output (n, p, q) gets x[n, c, p // 2, q // 2] through tap
        # (p % 2, q % 2) only.
        cols = np.zeros((4, 2, 5 * 36))
        for n in range(5):
            for p in range(6):
                for q in range(6):
                    tap = (p % 2) * 2 + q % 2
                    cols[tap, :, n * 36 + p * 6 + q] = x64[n, 2 * g : 2 * g + 2, p // 2, q // 2]
        cols = cols.reshape(8, -1)
        rows = w32[2 * g : 2 * g + 2].reshape(2, 3, 4).transpose(1, 2, 0).reshape(3, 8)
        keep = mask[2 * g : 2 * g + 2].reshape(2, 3, 4).transpose(1, 2, 0).reshape(3, 8)
        assert (keep.reshape(3, 4, 2).sum(axis=2) == 1).all()  # 1 of the 2 channels per tap
        h = _damped(2 * cols @ cols.T)
        expected = _sequential(rows, h, keep)
        got = new[2 * g : 2 * g + 2].reshape(2, 3, 4).transpose(1, 2, 0).reshape(3, 8)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _sequential(w: np.ndarray, h: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Columns in order; each pruned one removed by a dense solve over the later columns."""
    w = w.copy()
    for r in range(w.shape[0]):
        for j in range(w.shape[1]):
            if not keep[r, j]:
                rest = np.arange(j + 1, w.shape[1])
                w[r, rest] += w[r, j] * np.linalg.solve(h[np.ix_(rest, rest)], h[rest, j])
                w[r, j] = 0.0
    return w


def test_conv_transpose_without_a_static_output_shape_is_refused() -> None:
    model = single_io_model(
        [helper.make_node("ConvTranspose", ["x", "W"], ["y"])],
        ["N", 2, "H", "W"],
        None,
        {"W": RNG.standard_normal((2, 3, 2, 2))},
    )
    x = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    with pytest.raises(InvalidOptionError, match=r"output shape of ConvTranspose 'W'.*--exclude$"):
        onnxprune.prune(model, sparsity=0.5, score="sparsegpt", calibration={"x": x})
    shaped = onnxprune.prune(
        model,
        sparsity=0.5,
        score="sparsegpt",
        calibration={"x": x},
        input_shapes={"x": [4, 2, 3, 3]},
    )
    assert shaped.report.direct_sparsity == pytest.approx(0.5)
