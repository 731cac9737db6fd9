"""Exact (position-level) reachability: every channel at every spatial position.

Forward maps (reachable from an input) and backward maps (reach an output) are boolean arrays of
each tensor's shape, pushed through the graph with 0/1 convolutions and matrix products that are
clamped after every layer, so nothing overflows however deep the net. A weight tap is active iff
the forward map of its input channel and the backward map of its output channel meet at that
offset. On every model without fallbacks this equals the reference computation of Vysogorets &
Kempe (linearized |w| network, all-ones input, active iff grad * |w| != 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from onnxprune import progress
from onnxprune.errors import LimitExceededError, ShapeError
from onnxprune.graph._classes import channel_classes, merge
from onnxprune.graph.build import ConnectivityGraph, Layer, Step
from onnxprune.graph.channel import Keep, LayerActivity, kept, recurrent_activities
from onnxprune.graph.conv_geometry import (
    contract_backward,
    contract_forward,
    contract_weight_grad,
    unbroadcast,
    window_sum,
    window_sum_adjoint,
)
from onnxprune.graph.recurrent import RecurrentUnits, hidden_axes
from onnxprune.graph.transfers import (
    Contract,
    Dense,
    Heads,
    Move,
    Pointwise,
    Recurrent,
    Reduce,
    Transfer,
    Window,
)
from onnxprune.model_checks import memory_limit

Maps = dict[str, np.ndarray]


def exact_reachability(
    graph: ConnectivityGraph, masks_for: frozenset[str] = frozenset(), keep: Keep | None = None
) -> dict[tuple[str, int], LayerActivity]:
    """Activity of every layer at position level, keyed by ``Layer.key``.

    ``masks_for`` and ``keep`` as in ``channel.channel_reachability``.

    Recurrent layers are followed per hidden unit, not per time step (``graph/recurrent.py``):
    a unit reached at some step counts as reached at every step, as at the channel level.

    Raises:
        ShapeError: a tensor on a signal path has a symbolic dimension other than the batch.
        LimitExceededError: the per-position maps would not fit in memory.
    """
    shapes = static_shapes(graph)
    patterns = _Patterns(graph)
    forward: Maps = {t: np.ones(shapes[t], bool) for t in graph.inputs}
    passes = 2 * len(graph.steps)  # forward, then backward: the progress reported
    for i, step in enumerate(graph.steps):
        progress.report("exact analysis", i, passes)
        for out, transfer in used_outputs(step, shapes):
            forward[out] = _push(patterns, step, transfer, forward, shapes[out], shapes)
    backward: Maps = {t: np.ones(shapes[t], bool) for t in graph.outputs if t in shapes}
    for i, step in enumerate(reversed(graph.steps), len(graph.steps)):
        progress.report("exact analysis", i, passes)
        for out, transfer in used_outputs(step, shapes):
            if out in backward and backward[out].any():
                _pull(patterns, step, transfer, backward[out], backward, shapes)
    result = {}
    for step in graph.steps:
        if step.recurrent:
            units = _units(graph, step)
            alive = _recurrent_sources(step, units, forward, shapes)
            out = np.zeros(units.size, bool)
            for name in step.outputs:
                if name in backward:
                    out |= _hidden(units.spec, backward[name])
            result.update(recurrent_activities(step, units, alive, out, masks_for, keep))
    for layer in graph.layers:
        if layer.contract.kind == "recurrent":
            continue
        x = forward.get(layer.x, np.zeros(shapes[layer.x], bool))
        y = backward.get(layer.y, np.zeros(shapes[layer.y], bool))
        pattern = patterns.of(layer)
        active = _active(layer.contract, pattern, x, y)
        dead_in, dead_out = _dead_units(layer.contract, active)
        mask = active if layer.name in masks_for else None
        activity = LayerActivity(
            int(np.count_nonzero(pattern)), int(active.sum()), dead_in, dead_out, mask
        )
        result[layer.key] = kept(keep, layer, activity)
    return result


@dataclass(frozen=True)
class _Patterns:
    """Each layer's nonzero pattern, read from its weight once per analysis.

    Kept packed (1/32 of a float32 weight) between the forward pass, the backward pass and the
    count, so a weight is converted from the model once, not three times.
    """

    graph: ConnectivityGraph
    packed: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def of(self, layer: Layer) -> np.ndarray:
        """The layer's pattern (consumed layout, bool)."""
        packed = self.packed.get(layer.key)
        if packed is None:
            pattern = self.graph.weight(layer) != 0
            self.packed[layer.key] = np.packbits(pattern.reshape(-1))
            return pattern
        unpacked = np.unpackbits(packed, count=math.prod(layer.shape)).view(bool)
        return unpacked.reshape(layer.shape)


def used_outputs(step: Step, shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, Transfer]]:
    """Outputs that something reads (unused ones, like Dropout's mask, need no map)."""
    return [(o, t) for o, t in zip(step.outputs, step.transfers, strict=False) if o in shapes]


def static_shapes(
    graph: ConnectivityGraph, needed_by: str = "the exact level"
) -> dict[str, tuple[int, ...]]:
    """Static shape (batch 1) of every tensor on a signal path, keyed by name.

    Raises:
        ShapeError: a tensor has a symbolic dimension other than the batch; the message says
            ``needed_by`` needs static shapes and suggests ``--input-shape``.
        LimitExceededError: the maps of these shapes would not fit in memory.
    """
    shapes = {}
    used = {n for s in graph.steps for n in s.inputs} | set(graph.outputs)
    for layer in graph.layers:
        used |= {layer.x, layer.y}
    names = [*graph.inputs, *(n for s in graph.steps for n in s.outputs if n in used)]
    names += [n for s in graph.steps for n in s.inputs]
    needs = _needing_shapes(graph)
    for name in dict.fromkeys(names):
        shape = graph.static_shape(name)
        if shape is None and name in needs:
            raise ShapeError(
                f"{needed_by} needs static shapes, but tensor {name!r} has shape "
                f"{_show(graph.shapes.get(name))}; {_shape_hint(graph)}"
            )
        # A tensor only element-wise or densely mixed needs no shape: one value stands for all
        # its elements (a 0-d map), which can only over-connect.
        shapes[name] = () if shape is None else shape
    _check_size(shapes, needed_by)
    return shapes


def _shape_hint(graph: ConnectivityGraph) -> str:
    """What would give a tensor a static shape: sizes for the inputs, unless they have them.

    With every input's size known (declared, ``--input-shape`` or ``--dim``), a size that is
    still unknown comes from an op shape inference cannot follow, from data, or from which
    branch an ``If`` takes (Silero VAD's decoder), and no flag fixes it. A symbolic batch is
    not known: the analysis counts it as 1, but shapes computed from it stay unknown
    (``nn.TransformerEncoder``'s and Wav2Vec2's attention reshapes read it) until ``--dim``
    fixes it.
    """
    declared = [graph.shapes.get(name) for name in graph.inputs]
    if all(shape is not None and None not in shape for shape in declared):
        return (
            "every input's size is known, but shape inference cannot tell this one (an op it "
            "cannot follow, a size from data or from an If branch); use the channel level "
            "(leave out --exact)"
        )
    return (
        "fix the inputs with --input-shape NAME=D0,D1,... or their symbolic dimensions with "
        "--dim NAME=SIZE (a text model's batch and sequence)"
    )


def _check_size(shapes: dict[str, tuple[int, ...]], needed_by: str) -> None:
    """Refuse maps that would not fit: a forward and a backward byte per element of each tensor.

    Raises:
        LimitExceededError: the maps need more than half of the memory this process may use.
    """
    needed = 2 * sum(math.prod(shape) for shape in shapes.values())
    limit = memory_limit()
    if needed > limit:
        raise LimitExceededError(
            f"{needed_by} needs {needed} bytes of per-position maps for these shapes, over "
            f"the {limit} bytes this process may use; use the channel level"
        )


def _needing_shapes(graph: ConnectivityGraph) -> set[str]:
    """Tensors whose element layout matters: used by layers, moves, windows or reductions."""
    needs: set[str] = set()
    for step in graph.steps:
        if step.recurrent:
            spec = step.transfers[0]
            needs |= {spec.x, spec.initial_h, spec.initial_c, *step.outputs} - {""}
            continue
        if step.layer is not None:
            needs |= {step.layer.x, step.layer.y}
            continue
        for out, t in zip(step.outputs, step.transfers, strict=False):
            if isinstance(t, Heads):
                reads = zip(step.inputs, t.reads, strict=False)
                needs |= {
                    out,
                    *(n for n, r in reads if r.carries is not None or r.steers is not None),
                }
            elif isinstance(t, Move):
                needs |= {out, *step.inputs}
            elif isinstance(t, (Window, Reduce)):
                needs |= {out, *step.inputs[:1]}
    return needs


def _show(shape) -> str:
    if shape is None:
        return "unknown"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# --- forward -------------------------------------------------------------------------------------


def _push(
    patterns: _Patterns,
    step: Step,
    t: Transfer,
    maps: Maps,
    out_shape: tuple[int, ...],
    shapes: dict[str, tuple[int, ...]],
) -> np.ndarray:
    if step.layer is not None:
        x = maps.get(step.layer.x, np.zeros(shapes[step.layer.x], bool))
        c, pattern = step.layer.contract, patterns.of(step.layer)
        axes = _unit_axes(c, x.ndim, len(out_shape))
        merged = None if axes is None else channel_classes(x, axes[0])
        if merged is not None:  # the distinct input maps, their weight slices OR-ed
            x, classes = merged
            pattern = merge(pattern, classes, x.shape[axes[0]], axis=axes[2])
        return contract_forward(c, _pattern(pattern), x, out_shape, binary=True)
    if isinstance(t, Recurrent):
        units = _units(patterns.graph, step)
        live = units.forward(**_recurrent_sources(step, units, maps, shapes))
        return _spread(t, live, out_shape)
    ins = [maps.get(n, np.zeros(shapes[n], bool)) for n in step.inputs]
    if isinstance(t, Heads):
        return _heads_push(t, ins, out_shape)
    if isinstance(t, Pointwise):
        if not out_shape:  # a 0-d summary: reached anywhere means reached everywhere
            return np.array(any(m.any() for m in ins))
        out = np.zeros(out_shape, bool)
        for m in ins:
            out |= np.broadcast_to(m, out_shape)
        return out
    if isinstance(t, Move):
        flat = np.concatenate([m.reshape(-1) for m in ins] + [np.zeros(1, bool)])
        return flat[np.where(t.ids >= 0, t.ids, flat.size - 1)]
    if isinstance(t, Window):
        return window_sum(t, ins[0], out_shape)
    if isinstance(t, Reduce):
        reduced = ins[0].any(axis=t.axes, keepdims=True)
        if t.keepdims:
            return np.broadcast_to(reduced, out_shape).copy()
        return reduced.reshape(out_shape)
    return np.full(out_shape, any(m.any() for m in ins))


# --- backward ------------------------------------------------------------------------------------


def _pull(
    patterns: _Patterns,
    step: Step,
    t: Transfer,
    b_out: np.ndarray,
    maps: Maps,
    shapes: dict[str, tuple[int, ...]],
) -> None:
    names = list(step.inputs)
    if isinstance(t, Recurrent):
        units = _units(patterns.graph, step)
        reaching = units.backward(_hidden(t, b_out))
        pulled = {t.x: units.pull_x(reaching), t.initial_h: units.pull_h0(reaching)}
        pulled[t.initial_c] = (reaching & units.nonzero).reshape(-1)
        names = [n for n in (t.x, t.initial_h, t.initial_c) if n and n in step.inputs]
        got = [
            np.broadcast_to(pulled[n], shapes[n]).copy()
            if n == t.x
            else _spread(t, pulled[n], shapes[n])
            for n in names
        ]
    elif step.layer is not None:
        contract, layer = step.layer.contract, step.layer
        pattern = patterns.of(layer)
        axes = _unit_axes(contract, len(shapes[layer.x]), b_out.ndim)
        merged = None if axes is None else channel_classes(b_out, axes[1])
        if merged is not None:  # the distinct output maps, their weight slices OR-ed
            b_out, classes = merged
            pattern = merge(pattern, classes, b_out.shape[axes[1]], axis=axes[3])
        got = [contract_backward(contract, _pattern(pattern), b_out, shapes[layer.x], binary=True)]
        names = [layer.x]
    elif isinstance(t, Heads):
        got = _heads_pull(t, b_out, [shapes[n] for n in names])
    elif isinstance(t, Pointwise) and b_out.ndim == 0:
        got = [np.full(shapes[n], bool(b_out)) for n in names]
    elif isinstance(t, Pointwise):
        got = [unbroadcast(b_out, shapes[n]) if shapes[n] else np.array(b_out.any()) for n in names]
    elif isinstance(t, Move):
        sizes = [int(np.prod(shapes[n])) for n in names]
        flat = np.zeros(sum(sizes) + 1, bool)
        flat[t.ids[b_out & (t.ids >= 0)]] = True
        bounds = np.cumsum([0, *sizes])
        got = [
            flat[a:b].reshape(shapes[n]) for a, b, n in zip(bounds, bounds[1:], names, strict=False)
        ]
    elif isinstance(t, Window):
        got = [window_sum_adjoint(t, b_out, shapes[names[0]])]
        names = names[:1]
    elif isinstance(t, Reduce):
        expanded = b_out if t.keepdims else np.expand_dims(b_out, t.axes)
        got = [np.broadcast_to(expanded.any(axis=t.axes, keepdims=True), shapes[names[0]])]
        names = names[:1]
    else:
        assert isinstance(t, Dense)  # noqa: S101 - internal invariant, not user input
        got = [np.full(shapes[n], bool(b_out.any())) for n in names]
    for name, m in zip(names, got, strict=True):
        prev = maps.get(name)
        maps[name] = m.copy() if prev is None else prev | m


# --- attention heads -----------------------------------------------------------------------------


def _channels(m: np.ndarray) -> np.ndarray:
    """A map's channels (its last axis) reached at some position."""
    return m.reshape(-1, m.shape[-1]).any(axis=0)


def _heads_push(t: Heads, ins: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
    """Output channels carried by a reached input unit, at every position.

    Attention mixes the sequence; an input without a ``Read`` reaches everything.
    """
    out = np.zeros(t.units, bool)
    for index, m in enumerate(ins):
        read = t.reads[index] if index < len(t.reads) else None
        if read is None:
            out |= bool(m.any())
        elif read.carries is not None:
            out |= read.carries[_channels(m)].any(axis=0)
    return np.broadcast_to(out, out_shape).copy()


def _heads_pull(t: Heads, b_out: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Input units that steer an output channel needed at some position, at every position."""
    needed = _channels(b_out)
    got = []
    for index, shape in enumerate(shapes):
        read = t.reads[index] if index < len(t.reads) else None
        if read is None or read.steers is None:
            got.append(np.full(shape, bool(needed.any())))
        else:
            got.append(np.broadcast_to(read.steers[:, needed].any(axis=1), shape).copy())
    return got


# --- recurrent layers ----------------------------------------------------------------------------


def _units(graph: ConnectivityGraph, step: Step) -> RecurrentUnits:
    w_layer, r_layer = step.recurrent
    return RecurrentUnits.of(step.transfers[0], graph.weight(w_layer), graph.weight(r_layer))


def _recurrent_sources(
    step: Step, units: RecurrentUnits, maps: Maps, shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """What reaches a recurrent step, as features (``x``) and units (``h0``, ``c0``)."""
    spec = units.spec
    alive = {}
    for name, kind in ((spec.x, "x"), (spec.initial_h, "h0"), (spec.initial_c, "c0")):
        if name and name in step.inputs:
            m = maps.get(name, np.zeros(shapes[name], bool))
            alive[kind] = (
                m.reshape(-1, m.shape[-1]).any(axis=0) if kind == "x" else _hidden(spec, m)
            )
    return alive


def _hidden(spec: Recurrent, m: np.ndarray) -> np.ndarray:
    """[D * H] units of a map of ``Y`` (rank 4) or of a state (rank 3): reached anywhere."""
    axes = hidden_axes(spec, 0 if m.ndim == 4 else 1)
    others = tuple(a for a in range(m.ndim) if a not in axes)
    return m.any(axis=others).reshape(-1)


def _spread(spec: Recurrent, units: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A map of ``Y`` (rank 4) or a state (rank 3) holding ``units`` [D, H] at every position."""
    axes = hidden_axes(spec, 0 if len(shape) == 4 else 1)
    view = [1] * len(shape)
    for axis in axes:
        view[axis] = shape[axis]
    return np.broadcast_to(units.reshape(view), shape).copy()


# --- prunable layers -----------------------------------------------------------------------------


def _pattern(pattern: np.ndarray) -> np.ndarray:
    """The weight's nonzero pattern as the 0/1 values to push maps through."""
    return pattern.astype(np.float32)


def _unit_axes(c: Contract, x_rank: int, y_rank: int) -> tuple[int, int, int, int] | None:
    """Unit axes of the input map, the output map, and the weight's input and output axes.

    ``None`` where units may not be merged (``graph._classes``): grouped and transposed
    convolutions, whose channels are tied to groups.
    """
    if c.kind == "matmul":
        w_in, w_out = (1, 0) if c.w_transposed else (0, 1)
        return c.x_axis % x_rank, c.y_axis % y_rank, w_in, w_out
    if c.kind == "conv" and c.group == 1:
        return 1, 1, 1, 0
    return None


def _active(c: Contract, pattern: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weight entries (consumed layout) whose input and output maps meet: the active ones.

    Where units may be merged the maps meet per pair of unit classes: the sums run over the
    distinct maps only and are spread back to every unit pair.
    """
    axes = _unit_axes(c, x.ndim, y.ndim)
    ins = None if axes is None else channel_classes(x, axes[0])
    outs = None if ins is None else channel_classes(y, axes[1])
    if ins is None or outs is None:
        return (contract_weight_grad(c, x, y, pattern.shape) > 0) & pattern
    (xs, x_classes), (ys, y_classes) = ins, outs
    shape = list(pattern.shape)
    shape[axes[2]], shape[axes[3]] = xs.shape[axes[0]], ys.shape[axes[1]]
    met = contract_weight_grad(c, xs, ys, tuple(shape)) > 0
    met = np.take(np.take(met, x_classes, axis=axes[2]), y_classes, axis=axes[3])
    return met & pattern


def _dead_units(c: Contract, active: np.ndarray) -> tuple[int, int]:
    if c.kind == "matmul":
        kn = active.T if c.w_transposed else active
        return int((~kn.any(axis=1)).sum()), int((~kn.any(axis=0)).sum())
    first = active.any(axis=tuple(range(1, active.ndim)))  # [O] for conv, [C] for transpose
    g = c.group
    a, b = active.shape[:2]
    second = active.reshape(g, a // g, b, -1).any(axis=(1, 3)).reshape(-1)
    if c.kind == "conv":
        return int((~second).sum()), int((~first).sum())
    return int((~first).sum()), int((~second).sum())
