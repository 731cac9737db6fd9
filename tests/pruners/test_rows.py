"""Wanda's comparison group: the activation score prunes each output row to its layer's target.

The model is a case where one threshold over the raw score empties a layer: a 1-D convolution
over 64 positions feeds, through a mean over those positions, a last Gemm that sees one value
per sample; the conv's scores sum 64 times more positions and dwarf the Gemm's.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxprune
from onnxprune.graph.build import build_graph
from onnxprune.pruners.allocations.global_ import global_masks
from onnxprune.pruners.layer_views import output_rows
from onnxprune.pruners.registry import ScoreContext, get_score
from onnxprune.pruners.rows import row_masks
from tests.helpers import single_io_model

RNG = np.random.default_rng(11)
W_CONV = RNG.standard_normal((16, 4, 3))  # Conv [O=16, C=4, k=3]
W_HEAD = RNG.standard_normal((5, 16))  # Gemm transB=1: [N=5, K=16]
MODEL = single_io_model(
    [
        helper.make_node("Conv", ["x", "Wc"], ["c"], pads=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["m", "Wh"], ["y"], transB=1),
    ],
    ["N", 4, 64],
    ["N", 5],
    {"Wc": W_CONV, "Wh": W_HEAD},
    opset=17,
)
X = RNG.standard_normal((32, 4, 64)).astype(np.float32)


def _raw_scores() -> dict[str, np.ndarray]:
    graph = build_graph(MODEL)
    weights = {layer.name: graph.weight(layer) for layer in graph.layers}
    ctx = ScoreContext(graph=graph, model=MODEL, calibration={"x": X})
    return get_score("activation").fn(weights, ctx)


def test_one_threshold_over_the_raw_score_empties_the_last_layer() -> None:
    # The failure the comparison group fixes (issue 16): Wh loses every weight at 50%.
    scores = _raw_scores()
    shapes = {name: s.shape for name, s in scores.items()}
    old = global_masks(shapes, 0.5, scores)
    assert not old["Wh"].any()


@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
def test_activation_keeps_every_layer_alive_with_any_allocation(allocation: str) -> None:
    result = onnxprune.prune(
        MODEL, sparsity=0.5, score="activation", allocation=allocation, calibration={"x": X}
    )
    assert result.report.direct_sparsity == pytest.approx(0.5, abs=1 / 272)
    assert not result.warnings
    for name, mask in result.masks.items():
        layer = next(layer for layer in build_graph(MODEL).layers if layer.name == name)
        rows = output_rows(layer, mask.shape)
        kept = np.bincount(rows.ravel(), weights=mask.ravel())
        sizes = np.bincount(rows.ravel())
        # every row loses its share of the layer's count: the same fraction, to one weight
        fraction = 1 - mask.mean()
        assert np.all(np.abs((sizes - kept) - fraction * sizes) < 1), name
        assert kept.min() > 0


def test_rows_keep_their_own_best_weights() -> None:
    # uniform: Wc and Wh each lose half; within each output row, the half with the lowest
    # |w| * ||x_j|| goes (brute force per row, scores computed independently in numpy).
    result = onnxprune.prune(
        MODEL, sparsity=0.5, score="activation", allocation="uniform", calibration={"x": X}
    )
    x = X.astype(np.float64)
    c = np.stack(
        [np.einsum("ock,nck->no", W_CONV.astype(np.float32), _taps(x, p)) for p in range(64)], 2
    )
    m = np.maximum(c, 0).mean(axis=2)
    conv_scores = (
        np.abs(W_CONV.astype(np.float32)) * np.sqrt((x**2).sum(axis=(0, 2)))[None, :, None]
    )
    head_scores = np.abs(W_HEAD.astype(np.float32)) * np.sqrt((m**2).sum(axis=0))[None, :]
    for name, scores, per_row in (("Wc", conv_scores, 6), ("Wh", head_scores, 8)):
        flat = scores.reshape(scores.shape[0], -1)
        expected = np.ones(flat.shape, bool)
        for row in range(flat.shape[0]):
            expected[row, np.argsort(flat[row], kind="stable")[:per_row]] = False
        np.testing.assert_array_equal(result.masks[name].reshape(flat.shape), expected)


def _taps(x: np.ndarray, p: int) -> np.ndarray:
    """Input window of output position ``p`` of a k=3, pad=1 conv: [N, C, 3]."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    return padded[:, :, p : p + 3]


def test_row_masks_share_exactly_and_take_pruned_first() -> None:
    scores = np.array([[3.0, -np.inf, 1.0, 2.0], [5.0, 4.0, 6.0, 7.0]])
    rows = np.repeat(np.arange(2), 4).reshape(2, 4)
    masks = row_masks({"w": scores}, {"w": 4}, {"w": rows})["w"]
    # row 0 has one already pruned: it loses that and 1.0; row 1 loses its two lowest.
    assert masks.tolist() == [[True, False, False, True], [False, False, True, True]]


def test_a_nearly_emptied_layer_is_warned_about_by_the_cli(tmp_path) -> None:
    # Wh [5, 128] holds one large weight among tiny ones: global magnitude at 70% keeps only it.
    head = np.tile(W_HEAD * 1e-4, (1, 8))
    head[0, 0] = 10.0
    model = single_io_model(
        [
            helper.make_node("Conv", ["x", "Wc"], ["c"], pads=[1, 1]),
            helper.make_node("ReduceMean", ["c"], ["m"], axes=[2], keepdims=0),
            helper.make_node("Gemm", ["m", "Wh"], ["y"], transB=1),
        ],
        ["N", 4, 64],
        ["N", 5],
        {"Wc": np.tile(W_CONV, (8, 1, 1)), "Wh": head},
        opset=17,
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    result = onnxprune.prune(model, sparsity=0.7)
    kept = int(result.masks["Wh"].sum())
    assert 0 < kept < 0.01 * 640
    assert [w for w in result.warnings if "near layer collapse" in w] == [
        f"Wh: keeps {kept} of 640 weights ({kept / 640:.2%}; near layer collapse); try "
        "--min-threshold or another allocation"
    ]
    cli = subprocess.run(
        [sys.executable, "-m", "onnxprune.cli", "prune", str(path), "-o", str(tmp_path / "p.onnx"),
         "--sparsity", "0.7"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 0
    assert "warning: Wh: keeps" in cli.stderr
