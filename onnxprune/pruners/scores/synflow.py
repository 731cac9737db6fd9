"""SynFlow: iterative synaptic-flow scores of the linearized network, computed in the log domain.

Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
flow" (NeurIPS 2020, arXiv 2006.05467), as PAPERS.md section 1 states it: every prunable kernel
replaced by ``|w| * mask``, biases zero, BatchNormalization and activations the identity,
max-pool an average-pool, an all-ones input (batch 1); ``R`` is the sum of all graph outputs and
``score(w) = |w| * dR/d|w|``. Pruning runs over ``rounds`` rounds with an exponential schedule.

The maps of the linearized net are held in the log domain (``_log_maps.py``): deep nets overflow
float64 with plain products, so the scores come out as logarithms.

Each round costs one forward and one backward pass over the (small) maps, one product per
weight, and a selection: the masked kernels, the log-magnitudes and the scores live in flat
buffers updated in place (a removal zeroes its entries), and the lowest scores of a round are
found among the few below a bound read off a fixed sample, not by partitioning all weights.
The products are hundreds of small matrix products a round, each bound by memory: BLAS runs
them on one thread, since waking its other threads for each costs more than they save, and
several times more on a busy machine (4.5x a round on two loaded cores).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.conv_geometry import contract_weight_grad
from onnxprune.pruners.registry import ScoreContext, score
from onnxprune.pruners.scores._log_maps import Scaled, Shapes, flow_maps, scaled

if TYPE_CHECKING:
    from onnxprune.graph.build import ConnectivityGraph, Layer

REMOVED = -1e200
"""Weights removed in a round score in ``[2 * REMOVED, REMOVED)``: earlier rounds lower, and
within a round lower scores lower."""

NO_FLOW = -1e100
"""A surviving weight that carries no flow in the last round (log-score ``-inf``) scores this."""

SAMPLE = 2**18
"""Scores sampled (at fixed positions) to bound a round's lowest scores before selecting them."""


@score(
    "synflow",
    "SynFlow: log of |w|*dR/d|w| of the linearized net, 100 rounds (arXiv 2006.05467)",
    reads_graph=True,
)
def synflow(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Iterative SynFlow (Tanaka et al. 2020; PAPERS.md section 1), as log-scores.

    Round ``i`` (1-based) of ``ctx.rounds`` rescores the currently masked network and removes the
    globally lowest-scored weights until the kept fraction of all prunable weights is
    ``(1 - ctx.target) ** (i / ctx.rounds)`` (the last round keeps exactly
    ``total - round(ctx.target * total)``). Weights that are zero or masked in ``ctx.masks``
    (``False`` = pruned) start pruned. With ``ctx.rounds == 1`` or ``ctx.target == 0`` this is
    single-shot SynFlow and every weight keeps its log-score.

    Args:
        weights: the prunable weights, keyed by layer name, in the layout the layer consumes.
        ctx: the graph (with static shapes), the target sparsity, the rounds, earlier masks.

    Returns:
        float64 arrays keyed like ``weights``, higher = keep. A surviving weight scores
        ``log(|w| * dR/d|w|)`` of the last round (monotone in SynFlow's score; ``NO_FLOW`` if
        that is ``-inf``); a weight removed in some round scores in ``[2 * REMOVED, REMOVED)``,
        lower the earlier its round went and, within a round, the lower it scored; zero or
        masked weights score ``-inf``. Pruning the ``round(ctx.target * total)`` lowest scores
        therefore reproduces SynFlow's final mask.

    Raises:
        InvalidOptionError: ``ctx.rounds < 1``, ``ctx.target`` outside [0, 1), a weight that is no
            layer of the graph or whose shape or mask does not fit it.
        ShapeError: a tensor on a signal path has a symbolic dimension other than the batch.

    Example:
        >>> import onnx
        >>> from onnx import helper, numpy_helper
        >>> from onnxprune.graph import build_graph
        >>> w = numpy_helper.from_array(np.array([[1.0, 2.0], [3.0, 0.0]], np.float32), "w")
        >>> x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
        >>> y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
        >>> node = helper.make_node("MatMul", ["x", "w"], ["y"])
        >>> g = helper.make_graph([node], "mlp", [x], [y], [w])
        >>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        >>> ctx = ScoreContext(build_graph(m), m, rounds=1)
        >>> np.exp(synflow({"w": numpy_helper.to_array(w)}, ctx)["w"]).round(6).tolist()
        [[1.0, 2.0], [3.0, 0.0]]
    """
    _check_options(ctx)
    if not weights:
        return {}
    from threadpoolctl import threadpool_limits  # here: listing the scores needs no BLAS

    net = _Net.of(ctx, weights)
    alive = net.layout.join({name: _initial_alive(name, w, ctx) for name, w in weights.items()})
    net.remove(np.flatnonzero(~alive))
    with threadpool_limits(limits=1, user_api="blas"):  # see the module docstring
        scores = net.log_scores(np.empty(alive.size))
        if ctx.rounds > 1:
            scores = _iterate(net, alive, scores, ctx.target, ctx.rounds)
    return net.layout.split(scores)


def _check_options(ctx: ScoreContext) -> None:
    if isinstance(ctx.rounds, bool) or not isinstance(ctx.rounds, int | np.integer):
        raise InvalidOptionError(f"rounds={ctx.rounds!r} must be a positive integer")
    if ctx.rounds < 1:
        raise InvalidOptionError(f"rounds={ctx.rounds} must be at least 1")
    if not 0.0 <= ctx.target < 1.0:
        raise InvalidOptionError(f"sparsity={ctx.target} must be in [0, 1)")


def _initial_alive(name: str, w: np.ndarray, ctx: ScoreContext) -> np.ndarray:
    alive = np.asarray(w) != 0
    mask = ctx.masks.get(name)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != alive.shape:
            raise InvalidOptionError(
                f"mask of {name!r} has shape {mask.shape}, the weight has {alive.shape}"
            )
        alive &= mask.astype(bool)
    return alive


# --- the iterative schedule ----------------------------------------------------------------------


def _iterate(
    net: _Net, alive: np.ndarray, scores: np.ndarray, target: float, rounds: int
) -> np.ndarray:
    """Run the schedule from ``scores`` of the mask ``alive`` (flat; both updated in place).

    Returns the last scores of the survivors and the removal ranks of the removed weights.
    """
    total = alive.size
    final_keep = total - round(target * total)
    sample = np.sort(np.random.default_rng(0).integers(0, total, min(total, SAMPLE)))
    removed: list[tuple[np.ndarray, np.ndarray]] = []  # per round: indices, their scores
    count = int(np.count_nonzero(alive))
    fresh = True  # scores belong to the current mask
    for i in range(1, rounds + 1):
        progress.report("synflow", i - 1, rounds)
        keep = max(final_keep, round(total * (1.0 - target) ** (i / rounds)))
        if count <= keep:
            continue
        if not fresh:
            net.log_scores(scores)
        drop = _lowest(scores, alive, count - keep, _bound(scores, alive, count - keep, sample))
        removed.append((drop, scores[drop]))
        alive[drop] = False
        net.remove(drop)
        count = keep
        fresh = False
    if not removed:  # nothing to prune (target 0, or the masks already go further)
        return scores
    scores[np.isneginf(scores) & alive] = NO_FLOW
    scores[~alive] = -np.inf
    for j, (drop, values) in enumerate(removed):
        scores[drop] = REMOVED * (2.0 - (j + _within(values)) / len(removed))
    return scores


def _bound(scores: np.ndarray, alive: np.ndarray, count: int, sample: np.ndarray) -> float:
    """A score that most likely at least ``count`` alive weights do not exceed.

    The quantile of the alive scores at the fixed positions ``sample``, four standard deviations
    (of a binomial count) above ``count``'s share of the alive weights; ``inf`` when the sample
    is too small to tell.
    """
    picked = scores[sample][alive[sample]]
    expected = count / np.count_nonzero(alive) * picked.size
    rank = int(expected + 4.0 * np.sqrt(expected) + 16)
    return float(np.partition(picked, rank)[rank]) if rank < picked.size else np.inf


def _lowest(scores: np.ndarray, alive: np.ndarray, count: int, bound: float) -> np.ndarray:
    """Flat indices (ascending) of the ``count`` lowest-scored alive weights.

    Ties at the cut go to the lowest indices. The weights are sought among the alive scores at
    most ``bound`` (a few more than ``count`` when ``bound`` is good), or among all alive
    scores when fewer than ``count`` are.
    """
    below = np.less_equal(scores, bound)
    below &= alive
    candidates = np.flatnonzero(below)
    if candidates.size < count:
        candidates = np.flatnonzero(alive)
    values = scores[candidates]
    cut = np.partition(values, count - 1)[count - 1]
    lower = values < cut
    ties = np.flatnonzero(values == cut)[: count - int(np.count_nonzero(lower))]
    lower[ties] = True
    return candidates[lower]


def _within(values: np.ndarray) -> np.ndarray:
    """Rank-preserving positions in ``[0, 0.75]`` of one round's removed scores.

    ``-inf`` (no flow) is 0; finite scores map linearly onto ``[0.25, 0.75]``.
    """
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.size)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    span = (values - lo) / (hi - lo) if hi > lo else np.full(values.size, 0.5)
    return np.where(finite, 0.25 + 0.5 * span, 0.0)


class _Layout:
    """Arrays keyed by name laid end to end in one flat array, and back."""

    def __init__(self, like: Mapping[str, np.ndarray]) -> None:
        self.shapes = {name: np.shape(a) for name, a in like.items()}
        bounds = np.cumsum([0, *(int(np.prod(s)) for s in self.shapes.values())]).tolist()
        self.spans = dict(zip(self.shapes, itertools.pairwise(bounds), strict=True))
        self.total = bounds[-1]

    def join(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        parts = [np.asarray(arrays[n]).reshape(-1) for n in self.shapes]
        return np.concatenate(parts) if parts else np.zeros(0)

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {n: flat[lo:hi].reshape(self.shapes[n]) for n, (lo, hi) in self.spans.items()}


# --- the linearized network ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Net:
    """The graph with static shapes and its kernels, the scored ones views of flat buffers.

    Attributes:
        unit_w: ``|w| * mask`` of the scored weights divided by the largest ``|w|`` of their
            layer (flat; ``remove`` zeroes entries).
        log_w: ``log|w|`` of the scored weights, ``-inf`` where removed (flat).
        kernels: every layer's kernel keyed by node: the scored ones views of ``unit_w`` scaled
            by the log of their layer's largest ``|w|``, the others fixed.
    """

    graph: ConnectivityGraph
    shapes: Shapes
    layout: _Layout
    unit_w: np.ndarray
    log_w: np.ndarray
    kernels: Mapping[str, Scaled]

    @classmethod
    def of(cls, ctx: ScoreContext, weights: Mapping[str, np.ndarray]) -> _Net:
        from onnxprune.graph.exact import static_shapes  # here: listing the scores needs no ONNX

        graph = ctx.graph
        shapes = static_shapes(graph, "SynFlow")
        missing = sorted(set(weights) - {layer.name for layer in graph.layers})
        if missing:
            raise InvalidOptionError(f"weights {missing} are not prunable layers of the graph")
        recurrent = next((s.node for s in graph.steps if s.recurrent), None)
        if recurrent is not None:
            raise InvalidOptionError(
                f"synflow does not follow recurrent layers (node {recurrent!r}: LSTM/GRU/RNN); "
                "use another score"
            )
        for layer in graph.layers:
            if layer.name in weights and tuple(np.shape(weights[layer.name])) != layer.shape:
                raise InvalidOptionError(
                    f"weight {layer.name!r} has shape {np.shape(weights[layer.name])}, "
                    f"layer {layer.node!r} consumes {layer.shape}"
                )
        layout = _Layout(weights)
        unit_w = np.abs(layout.join(weights).astype(np.float64))
        with np.errstate(divide="ignore"):
            log_w = np.log(unit_w)
        log_max = {}
        for name, (lo, hi) in layout.spans.items():
            top = float(unit_w[lo:hi].max()) if hi > lo else 0.0
            log_max[name] = float(np.log(top)) if top > 0 else -np.inf
            unit_w[lo:hi] /= top if top > 0 else 1.0
        kernels = {}
        for layer in graph.layers:
            if layer.name in weights:
                lo, hi = layout.spans[layer.name]
                kernels[layer.node] = Scaled(
                    unit_w[lo:hi].reshape(layer.shape), log_max[layer.name]
                )
            else:
                w = np.abs(graph.weight(layer).astype(np.float64))
                mask = ctx.masks.get(layer.name)
                kernels[layer.node] = scaled(w if mask is None else w * mask, 0.0)
        return cls(graph, shapes, layout, unit_w, log_w, kernels)

    def remove(self, flat: np.ndarray) -> None:
        """Prune the scored weights at the flat indices ``flat``."""
        self.unit_w[flat] = 0.0
        self.log_w[flat] = -np.inf

    def log_scores(self, out: np.ndarray) -> np.ndarray:
        """``log(|w| * dR/d|w|)`` of the scored weights (flat) written into ``out``."""
        forward, backward = flow_maps(self.graph, self.shapes, self.kernels)
        done: set[str] = set()
        for layer in self.graph.layers:
            if layer.name in self.layout.spans:
                lo, hi = self.layout.spans[layer.name]
                grad = out[lo:hi].reshape(layer.shape)
                x, y = forward.get(layer.x), backward.get(layer.y)
                if layer.name in done:  # a shared weight: dR/dw adds up over its uses
                    np.logaddexp(grad, _log_grad(layer, x, y, np.empty(layer.shape)), out=grad)
                else:
                    _log_grad(layer, x, y, grad)
                    done.add(layer.name)
        out += self.log_w
        return out


def _log_grad(layer: Layer, x: Scaled | None, y: Scaled | None, out: np.ndarray) -> np.ndarray:
    """``log dR/d|w|`` of ``layer``'s weight from the maps of its input and output, into ``out``."""
    if x is None or y is None or x.log == -np.inf or y.log == -np.inf:
        out.fill(-np.inf)
        return out
    contract_weight_grad(layer.contract, x.value, y.value, layer.shape, out=out)
    with np.errstate(divide="ignore"):
        np.log(out, out=out)
    out += x.log + y.log
    return out
