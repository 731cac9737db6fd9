"""Exact (position-level) reachability: every channel at every spatial position.

Forward maps (reachable from an input) and backward maps (reach an output) are boolean arrays of
each tensor's shape, pushed through the graph with 0/1 convolutions and matrix products that are
clamped after every layer, so nothing overflows however deep the net. A weight tap is active iff
the forward map of its input channel and the backward map of its output channel meet at that
offset. On every model without fallbacks this equals the reference computation of Vysogorets &
Kempe (linearized |w| network, all-ones input, active iff grad * |w| != 0).
"""

from __future__ import annotations

import numpy as np

from onnxprune.errors import ShapeError
from onnxprune.graph._conv import padded_size, taps
from onnxprune.graph.build import ConnectivityGraph, Step
from onnxprune.graph.channel import LayerActivity
from onnxprune.graph.transfers import Contract, Dense, Move, Pointwise, Reduce, Transfer, Window

Maps = dict[str, np.ndarray]


def exact_reachability(
    graph: ConnectivityGraph, masks_for: frozenset[str] = frozenset()
) -> dict[str, LayerActivity]:
    """Activity of every layer at position level, keyed by the consuming node's name.

    Raises:
        ShapeError: a tensor on a signal path has a symbolic dimension other than the batch.
    """
    shapes = _static_shapes(graph)
    forward: Maps = {t: np.ones(shapes[t], bool) for t in graph.inputs}
    for step in graph.steps:
        for out, transfer in _outputs(step, shapes):
            forward[out] = _push(graph, step, transfer, forward, shapes[out], shapes)
    backward: Maps = {t: np.ones(shapes[t], bool) for t in graph.outputs if t in shapes}
    for step in reversed(graph.steps):
        for out, transfer in _outputs(step, shapes):
            if out in backward and backward[out].any():
                _pull(graph, step, transfer, backward[out], backward, shapes)
    result = {}
    for layer in graph.layers:
        x = forward.get(layer.x, np.zeros(shapes[layer.x], bool))
        y = backward.get(layer.y, np.zeros(shapes[layer.y], bool))
        weight = graph.weight(layer)
        active = _active(layer.contract, weight, x, y)
        dead_in, dead_out = _dead_units(layer.contract, active)
        keep = active if layer.name in masks_for else None
        result[layer.node] = LayerActivity(
            int(np.count_nonzero(weight)), int(active.sum()), dead_in, dead_out, keep
        )
    return result


def _outputs(step: Step, shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, Transfer]]:
    """Outputs that something reads (unused ones, like Dropout's mask, need no map)."""
    return [(o, t) for o, t in zip(step.outputs, step.transfers, strict=False) if o in shapes]


def _static_shapes(graph: ConnectivityGraph) -> dict[str, tuple[int, ...]]:
    shapes = {}
    used = {n for s in graph.steps for n in s.inputs} | set(graph.outputs)
    for layer in graph.layers:
        used |= {layer.x, layer.y}
    names = [*graph.inputs, *(n for s in graph.steps for n in s.outputs if n in used)]
    names += [n for s in graph.steps for n in s.inputs]
    for name in dict.fromkeys(names):
        shape = graph.static_shape(name)
        if shape is None:
            raise ShapeError(
                f"the exact level needs static shapes, but tensor {name!r} has shape "
                f"{_show(graph.shapes.get(name))}; fix the inputs with --input-shape NAME=1,3,H,W"
            )
        shapes[name] = shape
    return shapes


def _show(shape) -> str:
    if shape is None:
        return "unknown"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# --- forward -------------------------------------------------------------------------------------


def _push(
    graph: ConnectivityGraph,
    step: Step,
    t: Transfer,
    maps: Maps,
    out_shape: tuple[int, ...],
    shapes: dict[str, tuple[int, ...]],
) -> np.ndarray:
    if step.layer is not None:
        x = maps.get(step.layer.x, np.zeros(shapes[step.layer.x], bool))
        return _contract_forward(step.layer.contract, graph.weight(step.layer), x, out_shape)
    ins = [maps.get(n, np.zeros(shapes[n], bool)) for n in step.inputs]
    if isinstance(t, Pointwise):
        out = np.zeros(out_shape, bool)
        for m in ins:
            out |= np.broadcast_to(m, out_shape)
        return out
    if isinstance(t, Move):
        flat = np.concatenate([m.reshape(-1) for m in ins] + [np.zeros(1, bool)])
        return flat[np.where(t.ids >= 0, t.ids, flat.size - 1)]
    if isinstance(t, Window):
        return _window_forward(t, ins[0], out_shape)
    if isinstance(t, Reduce):
        reduced = ins[0].any(axis=t.axes, keepdims=True)
        if t.keepdims:
            return np.broadcast_to(reduced, out_shape).copy()
        return reduced.reshape(out_shape)
    return np.full(out_shape, any(m.any() for m in ins))


# --- backward ------------------------------------------------------------------------------------


def _pull(
    graph: ConnectivityGraph,
    step: Step,
    t: Transfer,
    b_out: np.ndarray,
    maps: Maps,
    shapes: dict[str, tuple[int, ...]],
) -> None:
    names = list(step.inputs)
    if step.layer is not None:
        contract, layer = step.layer.contract, step.layer
        got = [_contract_backward(contract, graph.weight(layer), b_out, shapes[layer.x])]
        names = [layer.x]
    elif isinstance(t, Pointwise):
        got = [_unbroadcast(b_out, shapes[n]) for n in names]
    elif isinstance(t, Move):
        sizes = [int(np.prod(shapes[n])) for n in names]
        flat = np.zeros(sum(sizes) + 1, bool)
        flat[t.ids[b_out & (t.ids >= 0)]] = True
        bounds = np.cumsum([0, *sizes])
        got = [
            flat[a:b].reshape(shapes[n]) for a, b, n in zip(bounds, bounds[1:], names, strict=False)
        ]
    elif isinstance(t, Window):
        got = [_window_backward(t, b_out, shapes[names[0]])]
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


def _unbroadcast(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """OR ``b`` over the axes along which a tensor of ``shape`` was broadcast to ``b.shape``."""
    lead = b.ndim - len(shape)
    b = b.any(axis=tuple(range(lead))) if lead else b
    axes = tuple(
        i for i, (n, m) in enumerate(zip(shape, b.shape, strict=True)) if n == 1 and m != 1
    )
    return b.any(axis=axes, keepdims=True) if axes else b


# --- windows (pooling, LRN) ----------------------------------------------------------------------


def _window_geometry(t: Window, inner: tuple[int, ...], outer: tuple[int, ...]):
    n = len(t.axes)
    begins = t.pads[:n]
    size = padded_size(t.kernel, t.strides, t.dilations, outer, begins, inner)
    inside = tuple(slice(b, b + m) for b, m in zip(begins, inner, strict=True))
    return size, inside


def _window_forward(t: Window, x: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    axes = tuple(a % x.ndim for a in t.axes)
    moved = np.moveaxis(x, axes, range(-len(axes), 0))
    outer = tuple(out_shape[a] for a in axes)
    size, inside = _window_geometry(t, moved.shape[-len(axes) :], outer)
    padded = np.zeros(moved.shape[: -len(axes)] + size, bool)
    padded[(..., *inside)] = moved
    out = np.zeros(moved.shape[: -len(axes)] + outer, bool)
    for index in taps(t.kernel, t.strides, t.dilations, outer):
        out |= padded[(..., *index)]
    return np.moveaxis(out, range(-len(axes), 0), axes)


def _window_backward(t: Window, b: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    axes = tuple(a % b.ndim for a in t.axes)
    moved = np.moveaxis(b, axes, range(-len(axes), 0))
    inner = tuple(in_shape[a] for a in axes)
    outer = moved.shape[-len(axes) :]
    size, inside = _window_geometry(t, inner, outer)
    padded = np.zeros(moved.shape[: -len(axes)] + size, bool)
    for index in taps(t.kernel, t.strides, t.dilations, outer):
        padded[(..., *index)] |= moved
    return np.moveaxis(padded[(..., *inside)], range(-len(axes), 0), axes)


# --- prunable layers -----------------------------------------------------------------------------


def _matmul_parts(c: Contract, weight: np.ndarray) -> np.ndarray:
    pattern = (weight.T if c.w_transposed else weight) != 0
    return pattern.astype(np.float32)


def _moved_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Shape after ``np.moveaxis(a, axis, -1)`` on an array of ``shape``."""
    axis %= len(shape)
    return (*shape[:axis], *shape[axis + 1 :], shape[axis])


def _through_matmul(
    m: np.ndarray, w: np.ndarray, src_axis: int, dst_axis: int, dst_shape: tuple[int, ...]
) -> np.ndarray:
    """Push a 0/1 map through a [src units, dst units] 0/1 matrix along the given axes."""
    moved = np.moveaxis(m, src_axis, -1).reshape(-1, w.shape[0]).astype(np.float32)
    out = (moved @ w) > 0
    return np.moveaxis(out.reshape(_moved_shape(dst_shape, dst_axis)), -1, dst_axis)


def _contract_forward(
    c: Contract, weight: np.ndarray, x: np.ndarray, out_shape: tuple[int, ...]
) -> np.ndarray:
    if c.kind == "matmul":
        return _through_matmul(x, _matmul_parts(c, weight), c.x_axis, c.y_axis, out_shape)
    if c.kind == "conv":
        return _conv_forward(c, weight, x, out_shape)
    return _conv_transpose_forward(c, weight, x, out_shape)


def _contract_backward(
    c: Contract, weight: np.ndarray, b: np.ndarray, in_shape: tuple[int, ...]
) -> np.ndarray:
    if c.kind == "matmul":
        return _through_matmul(b, _matmul_parts(c, weight).T, c.y_axis, c.x_axis, in_shape)
    if c.kind == "conv":
        return _conv_backward(c, weight, b, in_shape)
    return _conv_transpose_backward(c, weight, b, in_shape)


def _active(c: Contract, weight: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weight entries (consumed layout) whose input and output maps meet: the active ones."""
    if c.kind == "matmul":
        w = _matmul_parts(c, weight)
        xm = np.moveaxis(x, c.x_axis, -1).reshape(-1, w.shape[0]).astype(np.float32)
        ym = np.moveaxis(y, c.y_axis, -1).reshape(-1, w.shape[1]).astype(np.float32)
        meet = ((xm.T @ ym) > 0) & (w > 0)
        return meet.T if c.w_transposed else meet
    if c.kind == "conv":  # cols read from the forward map of the input
        cols = _gather(c, x, weight.shape[2:], y.shape[2:])
        rows = _by_group(y, c.group)
    else:  # conv_transpose: cols read from the backward map of the output
        cols = _gather(c, y, weight.shape[2:], x.shape[2:])
        rows = _by_group(x, c.group)
    meet = np.stack([r @ k.T for r, k in zip(rows, cols, strict=True)]) > 0
    return meet.reshape(weight.shape) & (weight != 0)


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


def _by_group(m: np.ndarray, group: int) -> list[np.ndarray]:
    """Map [N, C, *sp] -> per group [C/G, N * P] float32 rows."""
    ch = m.shape[1]
    flat = np.moveaxis(m, 1, 0).reshape(group, ch // group, -1)
    return [g.astype(np.float32) for g in flat]


def _gather(
    c: Contract, m: np.ndarray, kernel: tuple[int, ...], outer: tuple[int, ...]
) -> list[np.ndarray]:
    """im2col of a 0/1 map: per group [C/G * taps, N * P] float32, padded by ``c.pads``."""
    n_sp = len(kernel)
    begins = c.pads[:n_sp]
    inner = m.shape[2:]
    size = padded_size(kernel, c.strides, c.dilations, outer, begins, inner)
    padded = np.zeros(m.shape[:2] + size, np.float32)
    padded[(..., *(slice(b, b + k) for b, k in zip(begins, inner, strict=True)))] = m
    moved = np.moveaxis(padded, 1, 0)  # [C, N, *padded]
    cols = np.stack([moved[(..., *i)] for i in taps(kernel, c.strides, c.dilations, outer)], 1)
    ch = m.shape[1]
    return list(cols.reshape(c.group, (ch // c.group) * cols.shape[1], -1))


def _scatter(
    c: Contract,
    cols: list[np.ndarray],
    shape: tuple[int, ...],
    kernel: tuple[int, ...],
    outer: tuple[int, ...],
) -> np.ndarray:
    """col2im, OR-ing: the inverse of ``_gather`` onto a map of ``shape`` = [N, C, *sp]."""
    n_sp = len(kernel)
    begins = c.pads[:n_sp]
    inner = shape[2:]
    size = padded_size(kernel, c.strides, c.dilations, outer, begins, inner)
    n, ch = shape[:2]
    n_taps = int(np.prod(kernel))
    stacked = np.concatenate(cols).reshape(ch, n_taps, n, *outer) > 0
    padded = np.zeros((ch, n, *size), bool)
    for tap, index in enumerate(taps(kernel, c.strides, c.dilations, outer)):
        padded[(..., *index)] |= stacked[:, tap]
    inside = padded[(..., *(slice(b, b + k) for b, k in zip(begins, inner, strict=True)))]
    return np.moveaxis(inside, 0, 1)


def _conv_forward(c: Contract, w: np.ndarray, x: np.ndarray, out_shape) -> np.ndarray:
    cols = _gather(c, x, w.shape[2:], out_shape[2:])
    pattern = (w != 0).reshape(c.group, w.shape[0] // c.group, -1).astype(np.float32)
    y = np.concatenate([p @ k for p, k in zip(pattern, cols, strict=True)]) > 0
    return np.moveaxis(y.reshape(out_shape[1], out_shape[0], *out_shape[2:]), 0, 1)


def _conv_backward(c: Contract, w: np.ndarray, b: np.ndarray, in_shape) -> np.ndarray:
    pattern = (w != 0).reshape(c.group, w.shape[0] // c.group, -1).astype(np.float32)
    cols = [p.T @ r for p, r in zip(pattern, _by_group(b, c.group), strict=True)]
    return _scatter(c, cols, in_shape, w.shape[2:], b.shape[2:])


def _conv_transpose_forward(c: Contract, w: np.ndarray, x: np.ndarray, out_shape) -> np.ndarray:
    pattern = (w != 0).reshape(c.group, w.shape[0] // c.group, -1).astype(np.float32)
    cols = [p.T @ r for p, r in zip(pattern, _by_group(x, c.group), strict=True)]
    return _scatter(c, cols, out_shape, w.shape[2:], x.shape[2:])


def _conv_transpose_backward(c: Contract, w: np.ndarray, b: np.ndarray, in_shape) -> np.ndarray:
    cols = _gather(c, b, w.shape[2:], in_shape[2:])
    pattern = (w != 0).reshape(c.group, w.shape[0] // c.group, -1).astype(np.float32)
    x = np.concatenate([p @ k for p, k in zip(pattern, cols, strict=True)]) > 0
    return np.moveaxis(x.reshape(in_shape[1], in_shape[0], *in_shape[2:]), 0, 1)
