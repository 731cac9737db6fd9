"""Scores and N:M masks on the ``W`` and ``R`` of recurrent layers.

A bidirectional RNN (``h_t = tanh(W x_t + R h_{t-1} + Wb + Rb)``; the reverse direction walks
the steps backwards) is run in numpy: the activation score of ``W`` is ``|w|`` times the norm of
the input feature it multiplies, that of ``R`` ``|r|`` times the norm of the hidden unit (of its
direction, over every step of ``Y``) it multiplies.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import InvalidOptionError
from onnxprune.graph.build import build_graph
from onnxprune.pruners.nm import nm_masks
from onnxprune.pruners.registry import ScoreContext, get_score

N, T, F, H, D = 6, 3, 4, 4, 2  # samples (batch first), steps, features, hidden, directions
RNG = np.random.default_rng(0)
W = RNG.standard_normal((D, H, F))
R = RNG.standard_normal((D, H, H))
BIAS = RNG.standard_normal((D, 2 * H))


def _model() -> onnx.ModelProto:
    """x [N, T, F] -> Transpose -> RNN (bidirectional) -> Y [T, D, N, H] -> y.

    (ONNX Runtime runs no ``layout=1`` recurrence: the batch-first input is transposed.)
    """
    tensors = [
        numpy_helper.from_array(np.asarray(v, np.float32), k)
        for k, v in {"w": W, "r": R, "b": BIAS}.items()
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "RNN", ["xt", "w", "r", "b"], ["y"], hidden_size=H, direction="bidirectional"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "rnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", T, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, D, "n", H])],
        tensors,
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _hidden(x: np.ndarray) -> np.ndarray:
    """Y [N, T, D, H] of the RNN, in float64."""
    y = np.zeros((x.shape[0], T, D, H))
    for d in range(D):
        h = np.zeros((x.shape[0], H))
        for t in range(T) if d == 0 else reversed(range(T)):
            h = np.tanh(x[:, t] @ W[d].T + h @ R[d].T + BIAS[d, :H] + BIAS[d, H:])
            y[:, t, d] = h
    return y


def _weights(graph):
    return {layer.name: graph.weight(layer) for layer in graph.layers}


def test_activation_score_of_recurrent_weights() -> None:
    model = _model()
    graph = build_graph(model)
    x = RNG.standard_normal((N, T, F)).astype(np.float32)
    ctx = ScoreContext(graph=graph, model=model, calibration={"x": x})
    scores = get_score("activation").fn(_weights(graph), ctx)
    x_norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(0, 1)))  # [F]
    h_norm = np.sqrt((_hidden(x.astype(np.float64)) ** 2).sum(axis=(0, 1)))  # [D, H]
    np.testing.assert_allclose(scores["w"], np.abs(W) * x_norm[None, None, :], rtol=1e-5)
    np.testing.assert_allclose(scores["r"], np.abs(R) * h_norm[:, None, :], rtol=1e-4)


def test_nm_keeps_n_of_m_along_each_gate_row() -> None:
    graph = build_graph(_model())
    layers = {layer.name: layer.contract for layer in graph.layers}
    masks = nm_masks({k: np.abs(v) for k, v in _weights(graph).items()}, layers, 2, 4)
    for name, value in (("w", W), ("r", R)):
        assert masks[name].shape == value.shape
        assert (masks[name].sum(axis=-1) == 2).all()
        top = np.argsort(-np.abs(value), axis=-1, kind="stable")[..., :2]
        assert np.take_along_axis(masks[name], top, axis=-1).all()


def test_synflow_refuses_recurrent_layers() -> None:
    model = _model()
    graph = build_graph(model, {"x": (1, T, F)})  # SynFlow wants static shapes
    ctx = ScoreContext(graph=graph, model=model, target=0.5)
    with pytest.raises(InvalidOptionError, match="synflow does not follow recurrent layers"):
        get_score("synflow").fn(_weights(graph), ctx)


def test_sparsegpt_refuses_recurrent_weights() -> None:
    import onnxprune

    x = RNG.standard_normal((N, T, F)).astype(np.float32)
    with pytest.raises(InvalidOptionError, match="sparsegpt does not prune recurrent"):
        onnxprune.prune(_model(), sparsity=0.5, score="sparsegpt", calibration={"x": x})
