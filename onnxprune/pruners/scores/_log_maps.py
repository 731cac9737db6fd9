"""Maps of the linearized network in the log domain, forward from an all-ones input and back.

The linearized net of SynFlow (``synflow.py``), transfer by transfer (``graph/transfers.py``),
and its exact adjoint:

- ``Pointwise``: the sum of its activation inputs, broadcast (Add; the identity for one input).
- ``Move``: a gather; an element with no source is 0.
- ``Window``: the average over the window, padding read as zeros, divided by the kernel size.
- ``Reduce``: the mean over the axes, broadcast back when the axes are kept.
- ``Heads`` (fused attention): an output channel adds up, per input, the mean over the positions
  of the channel it carries (its value), and of each channel that only steers it (its head's
  queries and keys) that mean split evenly over the outputs the channel steers: queries and keys
  weigh as much as values, so they score alike. An input without a ``Read``, or whose every unit
  steers, as ``Dense``.
- ``Dense`` (a fallback): every output element is the sum of all input elements.
- ``Contract``: the real convolution, transposed convolution or matrix product with the kernel.

Deep nets overflow float64 with plain products (each layer multiplies by about ``fan_in * |w|``),
so every map is held as an array scaled to ``max == 1`` and a log scale, and sums of differently
scaled terms are taken in the log domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.graph.conv_geometry import (
    contract_backward,
    contract_forward,
    unbroadcast,
    window_sum,
    window_sum_adjoint,
)
from onnxprune.graph.transfers import Dense, Heads, Move, Pointwise, Reduce, Transfer, Window

if TYPE_CHECKING:
    from onnxprune.graph.build import ConnectivityGraph, Step

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Scaled:
    """A nonnegative map as ``value * exp(log)``, ``max(value) == 1`` (all zero: ``-inf``).

    Kernels are scaled by their layer's largest unmasked ``|w|``, so their maximum is at most 1.
    """

    value: np.ndarray
    log: float


def flow_maps(
    graph: ConnectivityGraph, shapes: Shapes, kernels: Mapping[str, Scaled]
) -> tuple[dict[str, Scaled], dict[str, Scaled]]:
    """Forward maps from the all-ones input, backward maps (dR/d tensor) from the outputs."""
    from onnxprune.graph.exact import used_outputs

    forward = {t: Scaled(np.ones(shapes[t]), 0.0) for t in graph.inputs}
    for step in graph.steps:
        for out, transfer in used_outputs(step, shapes):
            forward[out] = _push(step, transfer, forward, kernels, shapes[out], shapes)
    backward = {t: Scaled(np.ones(shapes[t]), 0.0) for t in graph.outputs if t in shapes}
    for step in reversed(graph.steps):
        for out, transfer in used_outputs(step, shapes):
            b = backward.get(out)
            if b is not None and b.log > -np.inf:
                _pull(step, transfer, b, backward, kernels, shapes)
    return forward, backward


def scaled(a: np.ndarray, log: float) -> Scaled:
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
    return scaled(out, top)


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
        return scaled(
            contract_forward(step.layer.contract, k.value, x.value, out_shape), x.log + k.log
        )
    ins = [maps.get(n, _zero(shapes[n])) for n in step.inputs]
    if isinstance(t, Heads):
        return _sum([_heads_push(t, i, m, out_shape) for i, m in enumerate(ins)], out_shape)
    if isinstance(t, Pointwise):
        return _sum(ins, out_shape)
    if isinstance(t, Move):
        top = max(m.log for m in ins)
        if top == -np.inf:
            return _zero(out_shape)
        parts = [m.value.reshape(-1) * np.exp(m.log - top) for m in ins]
        flat = np.concatenate([*parts, np.zeros(1)])
        return scaled(flat[np.where(t.ids >= 0, t.ids, flat.size - 1)], top)
    x = ins[0]
    if isinstance(t, Window):
        return scaled(window_sum(t, x.value, out_shape) / np.prod(t.kernel), x.log)
    if isinstance(t, Reduce):
        mean = x.value.mean(axis=t.axes, keepdims=True)
        mean = np.broadcast_to(mean, out_shape) if t.keepdims else mean.reshape(out_shape)
        return scaled(mean, x.log)
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
        got = [scaled(pulled, b.log + k.log)]
    elif isinstance(t, Heads):
        got = [_heads_pull(t, i, b, shapes[n]) for i, n in enumerate(names)]
    elif isinstance(t, Pointwise):
        got = [scaled(unbroadcast(b.value, shapes[n]), b.log) for n in names]
    elif isinstance(t, Move):
        sizes = [int(np.prod(shapes[n])) for n in names]
        valid = t.ids >= 0
        flat = np.bincount(t.ids[valid], weights=b.value[valid], minlength=sum(sizes))
        bounds = np.cumsum([0, *sizes]).tolist()
        got = [
            scaled(flat[lo:hi].reshape(shapes[n]), b.log)
            for lo, hi, n in zip(bounds, bounds[1:], names, strict=False)
        ]
    elif isinstance(t, Window):
        names = names[:1]
        pulled = window_sum_adjoint(t, b.value, shapes[names[0]]) / np.prod(t.kernel)
        got = [scaled(pulled, b.log)]
    elif isinstance(t, Reduce):
        names = names[:1]
        expanded = b.value if t.keepdims else np.expand_dims(b.value, t.axes)
        count = int(np.prod([shapes[names[0]][a] for a in t.axes]))
        spread = expanded.sum(axis=t.axes, keepdims=True) / count
        got = [scaled(np.broadcast_to(spread, shapes[names[0]]), b.log)]
    else:
        assert isinstance(t, Dense)  # noqa: S101 - internal invariant, not user input
        got = [scaled(np.full(shapes[n], b.value.sum()), b.log) for n in names]
    for name, m in zip(names, got, strict=True):
        prev = maps.get(name)
        maps[name] = m if prev is None else _sum([prev, m], shapes[name])


def _steers(t: Heads, index: int) -> np.ndarray | None:
    """[input channels, output channels]: what each channel of input ``index`` adds to each.

    A value channel adds itself to the channel it carries; a channel that only steers (a query
    or key) adds itself split evenly over the outputs it steers, so it weighs as much as one
    value. None where every element reaches every output.
    """
    read = t.reads[index] if index < len(t.reads) else None
    if read is None or read.steers is None:
        return None
    carries = np.zeros(read.steers.shape, bool) if read.carries is None else read.carries
    others = read.steers & ~carries
    return carries + others / np.maximum(others.sum(axis=1, keepdims=True), 1)


def _heads_push(t: Heads, index: int, m: Scaled, out_shape: tuple[int, ...]) -> Scaled:
    """What input ``index`` adds to a ``Heads`` output: steering channels' means over positions."""
    steers = _steers(t, index)
    if steers is None or m.log == -np.inf:
        return scaled(np.full(out_shape, m.value.sum()), m.log)
    means = m.value.reshape(-1, steers.shape[0]).mean(axis=0)
    return scaled(np.broadcast_to(means @ steers, out_shape), m.log)


def _heads_pull(t: Heads, index: int, b: Scaled, shape: tuple[int, ...]) -> Scaled:
    """The adjoint of ``_heads_push`` for input ``index`` of ``shape``."""
    steers = _steers(t, index)
    if steers is None:
        return scaled(np.full(shape, b.value.sum()), b.log)
    sums = b.value.reshape(-1, steers.shape[1]).sum(axis=0)
    positions = int(np.prod(shape)) // steers.shape[0]
    return scaled(np.broadcast_to(steers @ sums / positions, shape), b.log)
