"""SynFlow: iterative synaptic-flow scores of the linearized network, computed in the log domain.

Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
flow" (NeurIPS 2020, arXiv 2006.05467), as PAPERS.md section 1 states it: every prunable kernel
replaced by ``|w| * mask``, biases zero, BatchNormalization and activations the identity,
max-pool an average-pool, an all-ones input (batch 1); ``R`` is the sum of all graph outputs and
``score(w) = |w| * dR/d|w|``. Pruning runs over ``rounds`` rounds with an exponential schedule.

The linearized net, transfer by transfer (``graph/transfers.py``), and its exact adjoint:

- ``Pointwise``: the sum of its activation inputs, broadcast (Add; the identity for one input).
- ``Move``: a gather; an element with no source is 0.
- ``Window``: the average over the window, padding read as zeros, divided by the kernel size.
- ``Reduce``: the mean over the axes, broadcast back when the axes are kept.
- ``Dense`` (a fallback): every output element is the sum of all input elements.
- ``Contract``: the real convolution, transposed convolution or matrix product with ``|w| * mask``.

Deep nets overflow float64 with plain products (each layer multiplies by about ``fan_in * |w|``),
so every map is held as an array scaled to ``max == 1`` and a log scale, sums of differently
scaled terms are taken in the log domain, and the scores come out as logarithms.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.conv_geometry import (
    contract_backward,
    contract_forward,
    contract_weight_grad,
    unbroadcast,
    window_sum,
    window_sum_adjoint,
)
from onnxprune.graph.transfers import Dense, Move, Pointwise, Reduce, Transfer, Window
from onnxprune.pruners.registry import ScoreContext, score

if TYPE_CHECKING:
    from onnxprune.graph.build import ConnectivityGraph, Layer, Step

REMOVED = -1e200
"""Weights removed in a round score in ``[2 * REMOVED, REMOVED)``, earlier removals lower."""

NO_FLOW = -1e100
"""A surviving weight that carries no flow in the last round (log-score ``-inf``) scores this."""

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Scaled:
    """A nonnegative map as ``value * exp(log)``, ``max(value) == 1`` (all zero: ``-inf``).

    Kernels are scaled by their layer's largest unmasked ``|w|``, so their maximum is at most 1.
    """

    value: np.ndarray
    log: float


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
        lower the earlier it went (ordinal in the order of removal); zero or masked weights
        score ``-inf``. Pruning the ``round(ctx.target * total)`` lowest scores therefore
        reproduces SynFlow's final mask.

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
    net = _Net.of(ctx, weights)
    alive = net.layout.join({name: _initial_alive(name, w, ctx) for name, w in weights.items()})
    scores = net.log_scores(alive)
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
    """Run the schedule from ``scores`` of the mask ``alive`` (flat; ``alive`` is updated).

    Returns the last scores of the survivors and the removal ordinals of the removed weights.
    """
    total = alive.size
    final_keep = total - round(target * total)
    removed: list[np.ndarray] = []
    fresh = True  # scores belong to the current mask
    for i in range(1, rounds + 1):
        progress.report("synflow", i - 1, rounds)
        keep = max(final_keep, round(total * (1.0 - target) ** (i / rounds)))
        excess = int(np.count_nonzero(alive)) - keep
        if excess <= 0:
            continue
        if not fresh:
            scores = net.log_scores(alive)
        drop = _lowest(scores, alive, excess)
        removed.append(drop)
        alive[drop] = False
        fresh = False
    if not removed:  # nothing to prune (target 0, or the masks already go further)
        return scores
    out = np.full(total, -np.inf)
    out[alive] = np.where(np.isfinite(scores), scores, NO_FLOW)[alive]
    order = np.concatenate(removed)
    out[order] = REMOVED * (2.0 - np.arange(order.size) / order.size)
    return out


def _lowest(scores: np.ndarray, alive: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` lowest-scored alive weights, lowest first."""
    candidates = np.flatnonzero(alive)
    values = scores[candidates]
    if count < values.size:
        picked = np.argpartition(values, count - 1)[:count]
    else:
        picked = np.arange(values.size)
    return candidates[picked[np.argsort(values[picked], kind="stable")]]


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
    """The graph with static shapes, the scored weights laid flat, and the other kernels.

    Attributes:
        unit_w: ``|w|`` of the scored weights divided by the largest ``|w|`` of their layer.
        log_max: log of that largest ``|w|``, by weight name.
        log_w: ``log|w|`` of the scored weights.
        fixed: kernels of the layers whose weight is not scored, keyed by node.
    """

    graph: ConnectivityGraph
    shapes: Shapes
    layout: _Layout
    unit_w: np.ndarray
    log_max: Mapping[str, float]
    log_w: np.ndarray
    fixed: Mapping[str, Scaled]

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
        fixed = {}
        for layer in graph.layers:
            if layer.name not in weights:
                w = np.abs(graph.weight(layer).astype(np.float64))
                mask = ctx.masks.get(layer.name)
                fixed[layer.node] = _scaled(w if mask is None else w * mask, 0.0)
            elif tuple(np.shape(weights[layer.name])) != layer.shape:
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
        return cls(graph, shapes, layout, unit_w, log_max, log_w, fixed)

    def log_scores(self, alive: np.ndarray) -> np.ndarray:
        """``log(|w| * dR/d|w|)`` of the scored weights (flat) under the flat mask ``alive``."""
        kernels = dict(self.fixed)
        for layer in self.graph.layers:
            if layer.name in self.layout.spans:
                lo, hi = self.layout.spans[layer.name]
                w = (self.unit_w[lo:hi] * alive[lo:hi]).reshape(layer.shape)
                kernels[layer.node] = Scaled(w, self.log_max[layer.name])
        forward, backward = self._maps(kernels)
        grads: dict[str, np.ndarray] = {}
        for layer in self.graph.layers:
            if layer.name in self.layout.spans:
                grad = _log_grad(layer, forward.get(layer.x), backward.get(layer.y))
                prev = grads.get(layer.name)  # a shared weight: dR/dw adds up over its uses
                grads[layer.name] = grad if prev is None else np.logaddexp(prev, grad)
        scores = np.where(alive, self.log_w, -np.inf)
        for name, (lo, hi) in self.layout.spans.items():
            scores[lo:hi] += grads[name].reshape(-1)
        return scores

    def _maps(self, kernels: Mapping[str, Scaled]) -> tuple[dict[str, Scaled], dict[str, Scaled]]:
        """Forward maps from the all-ones input, backward maps (dR/d tensor) from the outputs."""
        from onnxprune.graph.exact import used_outputs

        shapes = self.shapes
        forward = {t: Scaled(np.ones(shapes[t]), 0.0) for t in self.graph.inputs}
        for step in self.graph.steps:
            for out, transfer in used_outputs(step, shapes):
                forward[out] = _push(step, transfer, forward, kernels, shapes[out], shapes)
        backward = {t: Scaled(np.ones(shapes[t]), 0.0) for t in self.graph.outputs if t in shapes}
        for step in reversed(self.graph.steps):
            for out, transfer in used_outputs(step, shapes):
                b = backward.get(out)
                if b is not None and b.log > -np.inf:
                    _pull(step, transfer, b, backward, kernels, shapes)
        return forward, backward


def _log_grad(layer: Layer, x: Scaled | None, y: Scaled | None) -> np.ndarray:
    """``log dR/d|w|`` of ``layer``'s weight from the maps of its input and output."""
    if x is None or y is None or x.log == -np.inf or y.log == -np.inf:
        return np.full(layer.shape, -np.inf)
    grad = contract_weight_grad(layer.contract, x.value, y.value, layer.shape)
    with np.errstate(divide="ignore"):
        np.log(grad, out=grad)
    grad += x.log + y.log
    return grad


# --- maps in the log domain ----------------------------------------------------------------------


def _scaled(a: np.ndarray, log: float) -> Scaled:
    """``a * exp(log)`` (``a >= 0``) rescaled so that its largest value is 1."""
    top = float(a.max()) if a.size else 0.0
    if top <= 0.0 or log == -np.inf:
        return Scaled(np.zeros(a.shape), -np.inf)
    return Scaled(a / top, log + float(np.log(top)))


def _zero(shape: tuple[int, ...]) -> Scaled:
    return Scaled(np.zeros(shape), -np.inf)


def _sum(terms: list[Scaled], shape: tuple[int, ...]) -> Scaled:
    """The sum of ``terms`` broadcast to ``shape``, rescaled to the largest scale first."""
    top = max((t.log for t in terms), default=-np.inf)
    if top == -np.inf:
        return _zero(shape)
    out = np.zeros(shape)
    for t in terms:
        if t.log > -np.inf:
            out += t.value * np.exp(t.log - top)
    return _scaled(out, top)


def _push(
    step: Step,
    t: Transfer,
    maps: dict[str, Scaled],
    kernels: Mapping[str, Scaled],
    out_shape: tuple[int, ...],
    shapes: Shapes,
) -> Scaled:
    """The forward map of one output of ``step``."""
    if step.layer is not None:
        x = maps.get(step.layer.x, _zero(shapes[step.layer.x]))
        k = kernels[step.layer.node]
        if x.log == -np.inf or k.log == -np.inf:
            return _zero(out_shape)
        return _scaled(
            contract_forward(step.layer.contract, k.value, x.value, out_shape), x.log + k.log
        )
    ins = [maps.get(n, _zero(shapes[n])) for n in step.inputs]
    if isinstance(t, Pointwise):
        return _sum(ins, out_shape)
    if isinstance(t, Move):
        top = max(m.log for m in ins)
        if top == -np.inf:
            return _zero(out_shape)
        parts = [m.value.reshape(-1) * np.exp(m.log - top) for m in ins]
        flat = np.concatenate([*parts, np.zeros(1)])
        return _scaled(flat[np.where(t.ids >= 0, t.ids, flat.size - 1)], top)
    x = ins[0]
    if isinstance(t, Window):
        return _scaled(window_sum(t, x.value, out_shape) / np.prod(t.kernel), x.log)
    if isinstance(t, Reduce):
        mean = x.value.mean(axis=t.axes, keepdims=True)
        mean = np.broadcast_to(mean, out_shape) if t.keepdims else mean.reshape(out_shape)
        return _scaled(mean, x.log)
    total = _sum([Scaled(np.array(m.value.sum()), m.log) for m in ins], ())
    return Scaled(np.ones(out_shape), total.log) if total.log > -np.inf else _zero(out_shape)


def _pull(
    step: Step,
    t: Transfer,
    b: Scaled,
    maps: dict[str, Scaled],
    kernels: Mapping[str, Scaled],
    shapes: Shapes,
) -> None:
    """Add the adjoint of one output's transfer applied to ``b`` to the maps of the inputs."""
    names = list(step.inputs)
    if step.layer is not None:
        names = [step.layer.x]
        k = kernels[step.layer.node]
        pulled = contract_backward(step.layer.contract, k.value, b.value, shapes[names[0]])
        got = [_scaled(pulled, b.log + k.log)]
    elif isinstance(t, Pointwise):
        got = [_scaled(unbroadcast(b.value, shapes[n]), b.log) for n in names]
    elif isinstance(t, Move):
        sizes = [int(np.prod(shapes[n])) for n in names]
        valid = t.ids >= 0
        flat = np.bincount(t.ids[valid], weights=b.value[valid], minlength=sum(sizes))
        bounds = np.cumsum([0, *sizes]).tolist()
        got = [
            _scaled(flat[lo:hi].reshape(shapes[n]), b.log)
            for lo, hi, n in zip(bounds, bounds[1:], names, strict=False)
        ]
    elif isinstance(t, Window):
        names = names[:1]
        pulled = window_sum_adjoint(t, b.value, shapes[names[0]]) / np.prod(t.kernel)
        got = [_scaled(pulled, b.log)]
    elif isinstance(t, Reduce):
        names = names[:1]
        expanded = b.value if t.keepdims else np.expand_dims(b.value, t.axes)
        count = int(np.prod([shapes[names[0]][a] for a in t.axes]))
        spread = expanded.sum(axis=t.axes, keepdims=True) / count
        got = [_scaled(np.broadcast_to(spread, shapes[names[0]]), b.log)]
    else:
        assert isinstance(t, Dense)  # noqa: S101 - internal invariant, not user input
        got = [_scaled(np.full(shapes[n], b.value.sum()), b.log) for n in names]
    for name, m in zip(names, got, strict=True):
        prev = maps.get(name)
        maps[name] = m if prev is None else _sum([prev, m], shapes[name])
