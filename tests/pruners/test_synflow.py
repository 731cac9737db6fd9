"""SynFlow (Tanaka et al. 2020) against an independent float64 torch computation.

The reference builds the linearized net of PAPERS.md section 1 in torch from the same weights:
kernels ``|w| * mask`` as leaf tensors, no biases, BatchNormalization and ReLU dropped, max-pool
as ``avg_pool2d`` (padding counted as zeros), an all-ones input, ``R = sum(output)``; the SynFlow
score of a weight is ``grad * |w|``. Our scores are its logarithm: they must match it (``-inf``
exactly where the reference is 0) and rank the weights the same way.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.special import logsumexp
from scipy.stats import spearmanr

from onnxprune.errors import InvalidOptionError, ShapeError
from onnxprune.graph.build import build_graph
from onnxprune.pruners.registry import ScoreContext, get_score
from onnxprune.pruners.scores.synflow import REMOVED, _lowest, synflow

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 - the name every torch example uses
except ImportError:  # the torch extra is optional; only the references need it
    torch = F = None

needs_torch = pytest.mark.skipif(torch is None, reason="the torch reference needs the torch extra")
RNG = np.random.default_rng(7)


def _model(
    nodes: list[onnx.NodeProto],
    x: list[int | str],
    y: list[int | str],
    inits: dict[str, np.ndarray],
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "linearized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        [numpy_helper.from_array(_stored(v), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _stored(value: np.ndarray) -> np.ndarray:
    """Float tensors as float32, integer ones (pads, axes) as int64."""
    value = np.asarray(value)
    return value.astype(np.int64 if value.dtype.kind in "iu" else np.float32)


def _run(model: onnx.ModelProto, **options) -> dict[str, np.ndarray]:
    graph = build_graph(model)
    weights = {layer.name: graph.weight(layer) for layer in graph.layers}
    return get_score("synflow").fn(weights, ScoreContext(graph=graph, model=model, **options))


def _weights(shape: tuple[int, ...], zeros: float = 0.2) -> np.ndarray:
    """float32-exact signed weights with about ``zeros`` of them zero."""
    w = RNG.uniform(0.1, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)
    return np.where(RNG.random(shape) < zeros, 0.0, w).astype(np.float32)


def _torch_scores(forward, inits: dict[str, np.ndarray], x_shape, masks=None) -> dict:
    """SynFlow scores ``grad * |w|`` of the linearized net ``forward(x, leaves)`` in float64."""
    masks = masks or {}
    leaves = {
        k: torch.tensor(np.abs(v.astype(np.float64)) * masks.get(k, 1), requires_grad=True)
        for k, v in inits.items()
    }
    forward(torch.ones(x_shape, dtype=torch.float64), leaves).sum().backward()
    return {k: (t.grad * t).detach().numpy() for k, t in leaves.items()}


def _assert_log_scores_match(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    for name, ref in reference.items():
        assert ours[name].dtype == np.float64
        # The same weights carry no flow (zero, masked or on no input-output path).
        np.testing.assert_array_equal(np.isneginf(ours[name]), ref == 0, err_msg=name)
        live = ref > 0
        np.testing.assert_allclose(ours[name][live], np.log(ref[live]), rtol=0, atol=1e-9)
    a = np.concatenate([ours[k].reshape(-1) for k in reference])
    b = np.concatenate([reference[k].reshape(-1) for k in reference])
    live = b > 0
    assert spearmanr(a[live], np.log(b[live])).statistic >= 0.999


# --- single-shot scores against torch ------------------------------------------------------------

# MLP: x[1, 6] -> Gemm(W1 stored [5, 6], b1, transB=1) -> Relu -> MatMul W2[5, 4] -> y[1, 4].
# Row 2 of W1 is zero, so hidden unit 2 is dead and row 2 of W2 carries no flow although nonzero.
MLP_W = {"W1": _weights((5, 6)), "W2": _weights((5, 4), zeros=0.0)}
MLP_W["W1"][2] = 0.0
MLP = _model(
    [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["y"]),
    ],
    [1, 6],
    [1, 4],
    {**MLP_W, "b1": np.ones(5)},
)


def _mlp(x, w):
    return (x @ w["W1"].T) @ w["W2"]


@needs_torch
def test_mlp_matches_torch_and_dead_unit_is_minus_inf() -> None:
    ours = _run(MLP, rounds=1)
    _assert_log_scores_match(ours, _torch_scores(_mlp, MLP_W, (1, 6)))
    assert np.isneginf(ours["W2"][2]).all()  # nonzero, but behind the dead unit


@needs_torch
def test_existing_masks_start_pruned() -> None:
    mask = RNG.random((5, 4)) < 0.5
    ours = _run(MLP, rounds=1, masks={"W2": mask})
    _assert_log_scores_match(ours, _torch_scores(_mlp, MLP_W, (1, 6), {"W2": mask}))
    assert np.isneginf(ours["W2"][~mask]).all()


# CNN: x[1, 2, 9, 9] -> Conv W1[4, 2, 3, 3] stride 2 pads 1 (-> 5x5) -> BatchNormalization -> Relu
# -> grouped Conv W2[4, 2, 3, 3] group 2, pads (0, 0, 1, 1) (-> 4x4) -> MaxPool 3x3 stride 2 pads 1
# (-> 2x2) -> Flatten (16) -> Gemm W3[16, 3] -> y[1, 3].
CNN_W = {"W1": _weights((4, 2, 3, 3)), "W2": _weights((4, 2, 3, 3)), "W3": _weights((16, 3))}
BN = {"s": np.full(4, 2.0), "bb": np.ones(4), "mu": np.zeros(4), "var": np.ones(4)}
CNN = _model(
    [
        helper.make_node("Conv", ["x", "W1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], group=2, pads=[0, 0, 1, 1]),
        helper.make_node(
            "MaxPool", ["c2"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        ),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W3"], ["y"]),
    ],
    [1, 2, 9, 9],
    [1, 3],
    {**CNN_W, **BN},
)


def _cnn(x, w):
    h = F.conv2d(x, w["W1"], stride=2, padding=1)
    h = F.conv2d(F.pad(h, (0, 1, 0, 1)), w["W2"], groups=2)  # ONNX pads (0, 0, 1, 1): ends only
    h = F.avg_pool2d(h, 3, stride=2, padding=1, count_include_pad=True)
    return h.flatten(1) @ w["W3"]


@needs_torch
def test_cnn_with_stride_padding_groups_and_pooling_matches_torch() -> None:
    _assert_log_scores_match(_run(CNN, rounds=1), _torch_scores(_cnn, CNN_W, (1, 2, 9, 9)))


# Residual: x[1, 3, 6, 6] -> Conv A W1[4, 3, 3, 3] pads 1 -> Relu -> Conv B W2[4, 4, 3, 3] pads 1
# -> Add(A, B) -> Mul by a squeeze-excitation gate GlobalAveragePool(A) [1, 4, 1, 1] (a sum with
# broadcasting in the linearized net) -> GlobalAveragePool -> Flatten -> Gemm W3 stored [3, 4]
# transB -> y[1, 3].
RES_W = {"W1": _weights((4, 3, 3, 3)), "W2": _weights((4, 4, 3, 3)), "W3": _weights((3, 4))}
RESIDUAL = _model(
    [
        helper.make_node("Conv", ["x", "W1"], ["a"], pads=[1] * 4),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "W2"], ["b"], pads=[1] * 4),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("GlobalAveragePool", ["a"], ["gate"]),
        helper.make_node("Mul", ["s", "gate"], ["e"]),
        helper.make_node("GlobalAveragePool", ["e"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W3"], ["y"], transB=1),
    ],
    [1, 3, 6, 6],
    [1, 3],
    RES_W,
)


def _residual(x, w):
    a = F.conv2d(x, w["W1"], padding=1)
    s = a + F.conv2d(a, w["W2"], padding=1)
    e = s + a.mean(dim=(2, 3), keepdim=True)
    return e.mean(dim=(2, 3)) @ w["W3"].T


@needs_torch
def test_residual_add_matches_torch() -> None:
    _assert_log_scores_match(
        _run(RESIDUAL, rounds=1), _torch_scores(_residual, RES_W, (1, 3, 6, 6))
    )


# Concat: x[1, 2, 5, 5] -> Conv W1[3, 2, 1, 1] and Conv W2[2, 2, 3, 3] pads 1 -> Concat (5 channels)
# -> Pad (one zero row on top, one zero column on the right: 6x6) -> Conv W3[4, 5, 3, 3] stride 2
# (-> 2x2) -> ReduceMean over (2, 3), keepdims 0 -> MatMul W4[4, 2].
CAT_W = {
    "W1": _weights((3, 2, 1, 1)),
    "W2": _weights((2, 2, 3, 3)),
    "W3": _weights((4, 5, 3, 3)),
    "W4": _weights((4, 2)),
}
CONCAT = _model(
    [
        helper.make_node("Conv", ["x", "W1"], ["a"]),
        helper.make_node("Conv", ["x", "W2"], ["b"], pads=[1] * 4),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Pad", ["c", "pads"], ["cp"]),
        helper.make_node("Conv", ["cp", "W3"], ["d"], strides=[2, 2]),
        helper.make_node("ReduceMean", ["d"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "W4"], ["y"]),
    ],
    [1, 2, 5, 5],
    [1, 2],
    {**CAT_W, "pads": np.array([0, 0, 1, 0, 0, 0, 0, 1])},
)


def _concat(x, w):
    c = torch.cat([F.conv2d(x, w["W1"]), F.conv2d(x, w["W2"], padding=1)], dim=1)
    c = F.pad(c, (0, 1, 1, 0))
    return F.conv2d(c, w["W3"], stride=2).mean(dim=(2, 3)) @ w["W4"]


@needs_torch
def test_concat_matches_torch() -> None:
    _assert_log_scores_match(_run(CONCAT, rounds=1), _torch_scores(_concat, CAT_W, (1, 2, 5, 5)))


# Transposed conv and a fallback: x[1, 3, 4, 4] -> ConvTranspose W1[3, 2, 3, 3] stride 2 pads 1
# (-> 7x7) -> CumSum over axis 3 (no transfer rule: every output = sum of all inputs) -> Conv
# W2[2, 2, 3, 3] (-> 5x5) -> y.
TR_W = {"W1": _weights((3, 2, 3, 3)), "W2": _weights((2, 2, 3, 3))}
TRANSPOSE = _model(
    [
        helper.make_node("ConvTranspose", ["x", "W1"], ["t"], strides=[2, 2], pads=[1] * 4),
        helper.make_node("CumSum", ["t", "axis"], ["u"]),
        helper.make_node("Conv", ["u", "W2"], ["y"]),
    ],
    [1, 3, 4, 4],
    [1, 2, 5, 5],
    {**TR_W, "axis": np.array(3)},
)


def _transpose(x, w):
    t = F.conv_transpose2d(x, w["W1"], stride=2, padding=1)
    return F.conv2d(t.sum().expand(t.shape), w["W2"])


@needs_torch
def test_conv_transpose_and_dense_fallback_match_torch() -> None:
    graph = build_graph(TRANSPOSE)
    assert [f.op_type for f in graph.fallbacks] == ["CumSum"]
    ours = _run(TRANSPOSE, rounds=1)
    _assert_log_scores_match(ours, _torch_scores(_transpose, TR_W, (1, 3, 4, 4)))


def test_target_zero_is_single_shot() -> None:
    single = _run(CNN, rounds=1, target=0.5)
    np.testing.assert_array_equal(_run(CNN, rounds=100, target=0.0)["W2"], single["W2"])


# --- the log domain ------------------------------------------------------------------------------


def test_deep_chain_overflows_float64_but_log_scores_stay_exact() -> None:
    # 150 MatMul layers of width 8 with |w| in [25, 75]: R is about 400^150 = 1e390 > 1.8e308.
    depth, width = 150, 8
    inits = {f"W{i}": RNG.uniform(25, 75, (width, width)) * RNG.choice([-1, 1], (width, width))
             for i in range(depth)}  # fmt: skip
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    names = [f"x{i}" for i in range(depth)] + ["y"]
    nodes = [helper.make_node("MatMul", [names[i], f"W{i}"], [names[i + 1]]) for i in range(depth)]
    nodes[0].input[0] = "x"
    ours = _run(_model(nodes, [1, width], [1, width], inits), rounds=1)

    log_w = [np.log(np.abs(inits[f"W{i}"].astype(np.float64))) for i in range(depth)]
    with np.errstate(over="ignore"):
        plain = np.ones(width)
        for i in range(depth):
            plain = plain @ np.abs(inits[f"W{i}"].astype(np.float64))
    assert np.isinf(plain).all()  # the plain float64 computation overflows

    fwd = [np.zeros(width)]  # log of the forward map entering layer i
    for lw in log_w:
        fwd.append(logsumexp(fwd[-1][:, None] + lw, axis=0))
    bwd = [np.zeros(width)]  # log of dR/d(output of layer i), from the last layer down
    for lw in reversed(log_w):
        bwd.append(logsumexp(lw + bwd[-1][None, :], axis=1))
    bwd = bwd[::-1][1:]
    for i, lw in enumerate(log_w):
        expected = lw + fwd[i][:, None] + bwd[i][None, :]
        assert np.isfinite(ours[f"W{i}"]).all()
        np.testing.assert_allclose(ours[f"W{i}"], expected, rtol=1e-12, atol=1e-9)
    assert max(float(s.max()) for s in ours.values()) > 800  # log(score) beyond float64's range


# --- the iterative schedule ----------------------------------------------------------------------

# MLP 8 -> 16 -> 16 -> 4: 128 + 256 + 64 = 448 prunable weights.
ITER_W = {"W1": _weights((8, 16), 0.1), "W2": _weights((16, 16), 0.1), "W3": _weights((16, 4), 0.1)}
ITER = _model(
    [
        helper.make_node("MatMul", ["x", "W1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "W2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W3"], ["y"]),
    ],
    [1, 8],
    [1, 4],
    ITER_W,
)


def _iter_mlp(x, w):
    return x @ w["W1"] @ w["W2"] @ w["W3"]


def _flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([a.reshape(-1) for a in arrays.values()])


def _unflat(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    parts = np.split(flat, np.cumsum([a.size for a in like.values()])[:-1])
    return {k: p.reshape(a.shape) for (k, a), p in zip(like.items(), parts, strict=True)}


def _reference_synflow(
    forward, inits: dict[str, np.ndarray], x_shape, target: float, rounds: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Iterative SynFlow with torch float64 scores: the final flat mask, the removals per round."""
    alive = _flat(inits) != 0
    total = alive.size
    removed = []
    for i in range(1, rounds + 1):
        keep = round(total * (1 - target) ** (i / rounds))
        keep = total - round(target * total) if i == rounds else keep
        scores = _flat(_torch_scores(forward, inits, x_shape, _unflat(alive, inits)))
        excess = int(alive.sum()) - keep
        if excess > 0:
            candidates = np.flatnonzero(alive)
            drop = candidates[np.argsort(scores[candidates], kind="stable")[:excess]]
            alive[drop] = False
            removed.append(drop)
    return alive, removed


def _prune_lowest(scores: dict[str, np.ndarray], target: float) -> dict[str, np.ndarray]:
    flat = _flat(scores)
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[: round(target * flat.size)]] = False
    return _unflat(keep, scores)


@pytest.mark.parametrize(("target", "rounds"), [(0.8, 10), (0.95, 25)])
@needs_torch
def test_iterative_schedule_reproduces_synflow_mask(target: float, rounds: int) -> None:
    ours = _run(ITER, target=target, rounds=rounds)
    flat = _flat(ours)
    total = flat.size
    mask = _flat(_prune_lowest(ours, target))
    assert abs(mask.sum() / total - (1 - target)) <= 1 / total
    reference, removed = _reference_synflow(_iter_mlp, ITER_W, (1, 8), target, rounds)
    np.testing.assert_array_equal(mask, reference)
    # Zeros lowest, then removals round by round, then survivors with their log-scores.
    zeros = _flat(ITER_W) == 0
    np.testing.assert_array_equal(np.isneginf(flat), zeros)
    for earlier, later in itertools.pairwise(removed):
        assert flat[earlier].max() < flat[later].min()
    assert flat[removed[-1]].max() < REMOVED < flat[mask].min()
    assert sum(r.size for r in removed) == round(target * total) - zeros.sum()


@pytest.mark.parametrize(
    ("model", "forward", "inits", "x_shape"),
    [(CNN, _cnn, CNN_W, (1, 2, 9, 9)), (RESIDUAL, _residual, RES_W, (1, 3, 6, 6))],
    ids=["cnn", "residual"],
)
@needs_torch
def test_iterative_convolutions_reproduce_synflow_mask(model, forward, inits, x_shape) -> None:
    # Strides, padding, groups, pooling and a residual Add over 30 rounds to 90%: each round's
    # scores come from kernels masked in place, and the lowest are picked among a few candidates.
    ours = _flat(_run(model, target=0.9, rounds=30))
    reference, removed = _reference_synflow(forward, inits, x_shape, 0.9, 30)
    np.testing.assert_array_equal(_flat(_prune_lowest(_unflat(ours, inits), 0.9)), reference)
    for earlier, later in itertools.pairwise(removed):
        assert ours[earlier].max() < ours[later].min()
    for drop in removed:  # the reference lists a round's removals lowest score first
        assert (np.diff(ours[drop]) >= 0).all()


@pytest.mark.parametrize("bound", [np.inf, 0.3, -np.inf])
def test_lowest_alive_scores_whatever_the_bound(bound: float) -> None:
    # 0.3 bounds about a third of the scores (enough), -inf none of the finite ones (too few:
    # all alive scores are searched). Ties at the cut go to the lowest indices.
    scores = np.round(RNG.random(2000), 2)
    scores[RNG.random(2000) < 0.05] = -np.inf
    alive = RNG.random(2000) < 0.8
    candidates = np.flatnonzero(alive)
    for count in (1, 37, 400, int(alive.sum())):
        expected = candidates[np.argsort(scores[candidates], kind="stable")[:count]]
        np.testing.assert_array_equal(_lowest(scores, alive, count, bound), np.sort(expected))


def test_hundred_rounds_avoid_the_layer_collapse_of_magnitude() -> None:
    # x[1, 32] -> W1[32, 64] (|w| ~ 1) -> W2[64, 2] and W3[2, 64] (|w| ~ 0.01, the bottleneck)
    # -> W4[64, 16] (|w| ~ 1): 2048 + 128 + 128 + 1024 = 3328 weights. At 98% sparsity (67 kept)
    # global magnitude keeps only W1/W4 weights, so the bottleneck is pruned away entirely.
    big = {"W1": (32, 64), "W4": (64, 16)}
    small = {"W2": (64, 2), "W3": (2, 64)}
    inits = {k: RNG.uniform(0.5, 1.0, s).astype(np.float32) for k, s in big.items()}
    inits |= {k: RNG.uniform(0.005, 0.015, s).astype(np.float32) for k, s in small.items()}
    inits = {k: inits[k] for k in ("W1", "W2", "W3", "W4")}
    names = ["x", "h1", "h2", "h3", "y"]
    nodes = [helper.make_node("MatMul", [names[i], f"W{i + 1}"], [names[i + 1]]) for i in range(4)]
    model = _model(nodes, [1, 32], [1, 16], inits)
    target = 0.98

    magnitude = _prune_lowest({k: np.abs(v) for k, v in inits.items()}, target)
    assert not magnitude["W2"].any() and not magnitude["W3"].any()  # collapse

    mask = _prune_lowest(_run(model, target=target, rounds=100), target)
    assert all(m.any() for m in mask.values())
    flow = np.ones(32)
    for k in ("W1", "W2", "W3", "W4"):
        flow = flow @ (np.abs(inits[k]) * mask[k])
    assert flow.sum() > 0  # an input-output path survives


# --- errors and packaging ------------------------------------------------------------------------


def test_registered() -> None:
    assert get_score("synflow").fn is synflow


def test_symbolic_dims_need_input_shapes() -> None:
    model = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], ["N", "K"], ["N", 2],
                   {"W": np.ones((3, 2))})  # fmt: skip
    with pytest.raises(ShapeError, match="--input-shape"):
        _run(model)


@pytest.mark.parametrize(("options", "message"), [
    ({"rounds": 0}, "rounds=0"),
    ({"target": 1.0}, "sparsity=1.0"),
    ({"target": -0.1}, "sparsity=-0.1"),
])  # fmt: skip
def test_invalid_options(options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        _run(MLP, **options)


def test_weight_of_no_layer_is_refused() -> None:
    graph = build_graph(MLP)
    with pytest.raises(InvalidOptionError, match="not prunable layers"):
        synflow({"b1": np.ones(5)}, ScoreContext(graph=graph, model=MLP))


def test_runs_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, onnx\n"
        "from onnx import helper, numpy_helper\n"
        "from onnxprune.graph.build import build_graph\n"
        "from onnxprune.pruners.registry import ScoreContext, get_score\n"
        "m = onnx.load_from_string(sys.stdin.buffer.read())\n"
        "g = build_graph(m)\n"
        "w = {l.name: g.weight(l) for l in g.layers}\n"
        "s = get_score('synflow').fn(w, ScoreContext(graph=g, model=m, target=0.5, rounds=5))\n"
        "print(sorted(s))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=MLP.SerializeToString(),
        capture_output=True,
        check=True,
    )
    assert done.stdout.decode().strip() == "['W1', 'W2']"
