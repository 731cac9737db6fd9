"""The activation-aware score against activations computed outside ONNX Runtime.

An MLP is run forward in numpy and a small CNN in torch; the score of every weight must be
``|w|`` times the L2 norm (over samples and positions) of the input unit that weight multiplies.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.errors import DatasetError, InvalidOptionError
from onnxprune.graph.build import build_graph
from onnxprune.pruners.registry import ScoreContext, get_score
from onnxprune.pruners.scores.activation import input_sum_of_squares
from onnxprune.runtime import create_session
from tests.helpers import single_io_model as _model

RNG = np.random.default_rng(0)


def _scores(model: onnx.ModelProto, calibration) -> dict[str, np.ndarray]:
    graph = build_graph(model)
    weights = {layer.name: graph.weight(layer) for layer in graph.layers}
    ctx = ScoreContext(graph=graph, model=model, calibration=calibration)
    return get_score("activation").fn(weights, ctx)


def _norm(x: np.ndarray, axis: int) -> np.ndarray:
    """L2 norm over every axis but ``axis``, in float64."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    return np.sqrt((x.reshape(x.shape[0], -1) ** 2).sum(axis=1))


# MLP: x[N, 6] -> MatMul W1[6, 8] -> Relu -> Gemm(W2 stored [N=4, K=8], b2, transB=1) -> y
W1 = RNG.standard_normal((6, 8))
W2 = RNG.standard_normal((4, 8))
B2 = RNG.standard_normal(4)
MLP = _model(
    [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], transB=1),
    ],
    ["N", 6],
    ["N", 4],
    {"W1": W1, "W2": W2, "B2": B2},
)
X_MLP = RNG.standard_normal((10, 6)).astype(np.float32)


def test_mlp_matches_a_numpy_forward_pass() -> None:
    x = X_MLP.astype(np.float64)
    r = np.maximum(x @ W1.astype(np.float32).astype(np.float64), 0)
    scores = _scores(MLP, {"x": X_MLP})
    assert set(scores) == {"W1", "W2"}
    w1, w2 = np.abs(W1.astype(np.float32)), np.abs(W2.astype(np.float32))
    # W1 [K=6, N=8]: row k scaled by ||x[:, k]||; W2 [N=4, K=8]: column k by ||r[:, k]||.
    np.testing.assert_allclose(scores["W1"], w1 * _norm(x, 1)[:, None], rtol=1e-5)
    np.testing.assert_allclose(scores["W2"], w2 * _norm(r, 1)[None, :], rtol=1e-5)
    assert scores["W1"].dtype == scores["W2"].dtype == np.float64


def test_weight_on_the_left_scales_along_its_k_axis() -> None:
    # y[b] = W[M=5, K=4] @ x[b] with x [N, K=4, T=3]: units are axis -2 of x, axis 1 of W.
    w = RNG.standard_normal((5, 4))
    model = _model(
        [helper.make_node("MatMul", ["W", "x"], ["y"])], ["N", 4, 3], ["N", 5, 3], {"W": w}
    )
    x = RNG.standard_normal((7, 4, 3)).astype(np.float32)
    scores = _scores(model, {"x": x})
    expected = np.abs(w.astype(np.float32)) * _norm(x, 1)[None, :]
    np.testing.assert_allclose(scores["W"], expected, rtol=1e-6)


def test_shared_weight_takes_the_norm_over_all_its_inputs() -> None:
    # W [3, 3] used twice: y = (x @ W) @ W; its input units see x and h = x @ W.
    w = RNG.standard_normal((3, 3))
    model = _model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("MatMul", ["h", "W"], ["y"]),
        ],
        ["N", 3],
        ["N", 3],
        {"W": w},
    )
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    h = x.astype(np.float64) @ w.astype(np.float32)
    scores = _scores(model, {"x": x})
    norm = np.sqrt(_norm(x, 1) ** 2 + _norm(h, 1) ** 2)
    np.testing.assert_allclose(scores["W"], np.abs(w.astype(np.float32)) * norm[:, None], rtol=1e-5)


def _cnn() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x[N,4,6,6] -> Conv 3x3 pad 1 (6 ch) -> Relu -> Conv group 2 (4 ch) -> Relu
    -> ConvTranspose 2x2 stride 2 group 2 (4 ch) -> Relu -> GlobalAveragePool -> Flatten -> Gemm.
    """
    w = {
        "C1": RNG.standard_normal((6, 4, 3, 3)),  # [O, C, k, k]
        "C2": RNG.standard_normal((4, 3, 3, 3)),  # [O=4, C/G=3, k, k], C = 6
        "T3": RNG.standard_normal((4, 2, 2, 2)),  # [C=4, O/G=2, k, k], O = 4
        "G4": RNG.standard_normal((3, 4)),  # Gemm transB: [N=3, K=4]
    }
    nodes = [
        helper.make_node("Conv", ["x", "C1"], ["a1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "C2"], ["a2"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("ConvTranspose", ["r2", "T3"], ["a3"], strides=[2, 2], group=2),
        helper.make_node("Relu", ["a3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G4"], ["y"], transB=1),
    ]
    return _model(nodes, ["N", 4, 6, 6], ["N", 3], w), {
        k: v.astype(np.float32) for k, v in w.items()
    }


def test_cnn_matches_a_torch_forward_pass() -> None:
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    model, w = _cnn()
    x = RNG.standard_normal((9, 4, 6, 6)).astype(np.float32)
    t = {k: torch.from_numpy(v).double() for k, v in w.items()}
    r1 = functional.conv2d(torch.from_numpy(x).double(), t["C1"], padding=1).relu()
    r2 = functional.conv2d(r1, t["C2"], padding=1, groups=2).relu()
    r3 = functional.conv_transpose2d(r2, t["T3"], stride=2, groups=2).relu()
    f = r3.mean(dim=(2, 3))
    n0 = _norm(x, 1)
    n1, n2, n3, nf = (_norm(a.numpy(), 1) for a in (r1, r2, r3, f))
    assert n3.shape == (4,)
    scores = _scores(model, {"x": x})

    np.testing.assert_allclose(scores["C1"], np.abs(w["C1"]) * n0[None, :, None, None], rtol=1e-5)
    # Grouped conv: output channel o (group o // 2) reads input channels (o // 2) * 3 + local.
    expected = np.empty((4, 3))
    for o in range(4):
        for local in range(3):
            expected[o, local] = n1[(o // 2) * 3 + local]
    np.testing.assert_allclose(
        scores["C2"], np.abs(w["C2"]) * expected[:, :, None, None], rtol=1e-5
    )
    # ConvTranspose: input channel c is axis 0 of the weight, whatever the group.
    np.testing.assert_allclose(scores["T3"], np.abs(w["T3"]) * n2[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(scores["G4"], np.abs(w["G4"]) * nf[None, :], rtol=1e-5)


def test_batches_give_the_same_sums_as_one_batch() -> None:
    model, _ = _cnn()
    graph = build_graph(model)
    names = [layer.name for layer in graph.layers]
    x = {"x": RNG.standard_normal((10, 4, 6, 6)).astype(np.float32)}
    whole = input_sum_of_squares(model, graph, x, names, batch_size=10)
    for size in (1, 3, 4):  # 3 and 4 leave a short last batch
        parts = input_sum_of_squares(model, graph, x, names, batch_size=size)
        assert parts.keys() == whole.keys()
        for key in whole:
            np.testing.assert_allclose(parts[key], whole[key], rtol=1e-6)
    # Every batch counts: the first 5 samples alone give smaller sums.
    half = input_sum_of_squares(model, graph, {"x": x["x"][:5]}, names, batch_size=3)
    assert all((half[k] < whole[k]).any() for k in whole)


def test_fixed_batch_size_is_used_and_must_divide_the_samples() -> None:
    w = RNG.standard_normal((6, 8))
    model = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [2, 6], [2, 8], {"W": w})
    x = RNG.standard_normal((6, 6)).astype(np.float32)
    scores = _scores(model, {"x": x})
    np.testing.assert_allclose(
        scores["W"], np.abs(w.astype(np.float32)) * _norm(x, 1)[:, None], rtol=1e-6
    )
    with pytest.raises(DatasetError, match="fixed batch size"):
        _scores(model, {"x": x[:5]})


def test_model_is_not_modified() -> None:
    before = MLP.SerializeToString()
    _scores(MLP, {"x": X_MLP})
    assert MLP.SerializeToString() == before


@pytest.mark.parametrize(
    ("calibration", "match"),
    [
        (None, r"needs calibration data; none given \(wants x: float32\[N, 6\]\)"),
        ({"z": X_MLP}, r"no 'x' \(given: z; wants x: float32\[N, 6\]\)"),
        ({"x": X_MLP[None]}, r"float32\[1, 10, 6\]; the model wants rank 2"),
        ({"x": X_MLP.astype(np.float64)}, r"is float64\[10, 6\]; the model wants x: float32"),
        ({"x": X_MLP[:, :5]}, r"float32\[10, 5\]; the model wants x: float32\[N, 6\]"),
        ({"x": X_MLP[:0]}, r"no samples"),
    ],
)
def test_calibration_that_does_not_fit_is_refused(calibration, match: str) -> None:
    with pytest.raises(DatasetError, match=match) as info:
        _scores(MLP, calibration)
    assert "\n" not in str(info.value)


def test_a_weight_that_is_no_layer_is_refused() -> None:
    graph = build_graph(MLP)
    ctx = ScoreContext(graph=graph, model=MLP, calibration={"x": X_MLP})
    with pytest.raises(InvalidOptionError, match="'B2'"):
        get_score("activation").fn({"B2": B2}, ctx)


def test_create_session_reports_the_provider_it_runs_on() -> None:
    session, name = create_session(MLP.SerializeToString(), provider="cpu")
    assert name == "CPUExecutionProvider"
    assert session.get_providers() == ["CPUExecutionProvider"]
    session, name = create_session(MLP.SerializeToString())
    assert name == session.get_providers()[0]
    with pytest.raises(InvalidOptionError, match="provider='tpu'"):
        create_session(MLP.SerializeToString(), provider="tpu")
