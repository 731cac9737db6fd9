"""Data movement: every output element is a copy of one input element (or of nothing).

Each rule applies the op, with NumPy, to a tensor of element ids and returns the result as a
``Move``. That needs static shapes (a symbolic batch counts as 1); without them the op falls back
to dense mixing and says why. ``reshape`` (Reshape, Flatten) and ``squeeze`` (Squeeze,
Unsqueeze) share a rule but are separate families: structured pruning follows them differently.
Tensors of more than ``MAX_IDS`` elements mix densely too (``@bounded``): an id per element of a
shape a model merely declares (``Expand`` to ``[1, 2^20, 2^20]``) would not fit in memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Dense, Move

NEEDS_SHAPES = "needs static shapes (use --input-shape or --dim)"
MAX_IDS = 2**26
"""Most elements a rule follows one by one (an int64 id each: 512 MiB per tensor)."""

Rule = Callable[[NodeView], Move | tuple[Move, ...] | Dense]


def bounded(rule: Rule) -> Rule:
    """``rule``, unless an input or output holds more than ``MAX_IDS`` elements: dense mixing."""

    @functools.wraps(rule)
    def guarded(node: NodeView) -> Move | tuple[Move, ...] | Dense:
        shapes = [node.static_in(i) for i in node.activations]
        shapes += [node.static_out(i) for i in range(len(node.node.output))]
        largest = max((math.prod(s) for s in shapes if s is not None), default=0)
        if largest > MAX_IDS:
            return Dense(
                f"a tensor of {largest} elements, more than {MAX_IDS} to follow one by one"
            )
        return rule(node)

    return guarded


def _ids(node: NodeView, index: int) -> np.ndarray | None:
    """Ids of input ``index``'s elements: offsets into the concatenated activation inputs."""
    shape = node.static_in(index)
    if shape is None:
        return None
    if index not in node.activations:
        return np.full(shape, -1, dtype=np.int64)
    offset = 0
    for i in node.activations:
        if i == index:
            break
        prior = node.static_in(i)
        if prior is None:
            return None
        offset += int(np.prod(prior))
    return np.arange(offset, offset + int(np.prod(shape)), dtype=np.int64).reshape(shape)


@op_rule("Reshape", "Flatten")
@op_rule("Squeeze", "Unsqueeze", family="squeeze")
@bounded
def reshape(node: NodeView) -> Move | Dense:
    """Same elements in the same order, in a new shape (taken from shape inference).

    When inference leaves one dimension open (``[N, -1]`` targets computed from ``Shape``, as
    exporters write a flatten), it is solved from the element count, the batch being 1.
    """
    ids = _ids(node, 0)
    out = None if ids is None else _solve(node.out_shapes[0], ids.size)
    if ids is None or out is None:
        return Dense(NEEDS_SHAPES)
    return Move(ids.reshape(out))


def _solve(shape: tuple[int | None, ...] | None, size: int) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = [1 if (i == 0 and d is None) else d for i, d in enumerate(shape)]
    unknown = [i for i, d in enumerate(dims) if d is None]
    known = int(np.prod([d for d in dims if d is not None]))
    if len(unknown) > 1 or known == 0 or (not unknown and known != size):
        return None
    if unknown:
        if size % known:
            return None
        dims[unknown[0]] = size // known
    return tuple(int(d) for d in dims)


@op_rule("Transpose")
@bounded
def transpose(node: NodeView) -> Move | Dense:
    """Axes permuted by ``perm`` (reversed when absent)."""
    ids = _ids(node, 0)
    if ids is None:
        return Dense(NEEDS_SHAPES)
    return Move(np.transpose(ids, node.attr("perm", None)))


@op_rule("Concat")
@bounded
def concat(node: NodeView) -> Move | Dense:
    """Inputs laid side by side along ``axis``."""
    parts = [_ids(node, i) for i in range(len(node.node.input))]
    if any(p is None for p in parts):
        return Dense(NEEDS_SHAPES)
    return Move(np.concatenate(parts, axis=node.attr("axis")))


@op_rule("Split")
@bounded
def split(node: NodeView) -> tuple[Move, ...] | Dense:
    """Consecutive ranges along ``axis``; sizes read off the outputs' inferred shapes."""
    ids = _ids(node, 0)
    outs = [node.static_out(i) for i in range(len(node.node.output))]
    if ids is None or any(o is None for o in outs):
        return Dense(NEEDS_SHAPES)
    axis = node.attr("axis", 0) % ids.ndim
    bounds = np.cumsum([o[axis] for o in outs])[:-1]
    return tuple(Move(part) for part in np.split(ids, bounds, axis=axis))


@op_rule("Slice", family="slice")
@bounded
def slice_(node: NodeView) -> Move | Dense:
    """``starts:ends:steps`` along ``axes`` (attributes before opset 10, inputs after)."""
    ids = _ids(node, 0)
    if ids is None:
        return Dense(NEEDS_SHAPES)
    if node.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes", None), None
    else:
        starts, ends, axes, steps = (node.const(i) for i in range(1, 5))
        if starts is None or ends is None:
            return Dense("Slice bounds are computed at run time")
    starts, ends = np.asarray(starts).tolist(), np.asarray(ends).tolist()
    axes = list(range(len(starts))) if axes is None else np.asarray(axes).tolist()
    steps = [1] * len(starts) if steps is None else np.asarray(steps).tolist()
    index = [slice(None)] * ids.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis % ids.ndim] = slice(*_clamp(start, end, step, ids.shape[axis % ids.ndim]))
    return Move(ids[tuple(index)])


def _clamp(start: int, end: int, step: int, size: int) -> tuple[int | None, int | None, int]:
    """ONNX slice bounds (huge sentinels, negatives) as Python slice arguments."""
    start = min(max(start + size if start < 0 else start, -1 if step < 0 else 0), size)
    if step < 0:
        end = end + size if end < 0 else end
        end = None if end < 0 else min(end, size - 1)
        return min(start, size - 1), end, step
    end = min(max(end + size if end < 0 else end, 0), size)
    return start, end, step


@op_rule("Pad")
@bounded
def pad(node: NodeView) -> Move | Dense:
    """Constant padding brings in elements with no source; edge/reflect copy existing ones."""
    ids = _ids(node, 0)
    if ids is None:
        return Dense(NEEDS_SHAPES)
    pads = node.attr("pads", None) if node.opset < 11 else node.const(1)
    if pads is None:
        return Dense("Pad amounts are computed at run time")
    pads = np.asarray(pads).reshape(-1).tolist()
    axes = node.const(3)
    axes = list(range(ids.ndim)) if axes is None else [a % ids.ndim for a in axes.tolist()]
    width = [(0, 0)] * ids.ndim
    for k, axis in enumerate(axes):
        width[axis] = (pads[k], pads[k + len(axes)])
    mode = node.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if any(b < 0 or e < 0 for b, e in width):
        return Dense("Pad with negative amounts")
    if mode == "constant":
        return Move(np.pad(ids, width, mode="constant", constant_values=-1))
    return Move(np.pad(ids, width, mode={"reflect": "reflect", "edge": "edge"}.get(mode, "wrap")))


@op_rule("Expand", "Tile")
@bounded
def broadcast(node: NodeView) -> Move | Dense:
    """Copies of the input to fill the output shape (Expand broadcasts, Tile repeats)."""
    ids, out = _ids(node, 0), node.static_out()
    if ids is None or out is None:
        return Dense(NEEDS_SHAPES)
    if node.op_type == "Expand":
        return Move(np.broadcast_to(ids, out).copy())
    reps = [o // i for o, i in zip(out, ids.shape, strict=True)]
    return Move(np.tile(ids, reps))


@op_rule("Gather")
@bounded
def gather(node: NodeView) -> Move | Dense:
    """``take`` along ``axis`` with constant indices; data-dependent indices mix densely.

    Indices outside the static shape fall back too: a symbolic batch counts as 1, so a model
    that gathers batch entry 1 (state tensors of recurrent exports do) cannot be followed.
    """
    ids, indices = _ids(node, 0), node.const(1)
    if ids is None or ids.ndim == 0:
        return Dense(NEEDS_SHAPES)
    if indices is None:
        return Dense("Gather indices are computed at run time")
    axis = node.attr("axis", 0) % ids.ndim
    size = ids.shape[axis]
    if np.any((indices < -size) | (indices >= size)):
        return Dense(f"Gather indices outside axis {axis} of size {size} (a symbolic batch is 1)")
    return Move(np.take(ids, np.where(indices < 0, indices + size, indices), axis=axis))


@op_rule("GatherND")
@bounded
def gather_nd(node: NodeView) -> Move | Dense:
    """Slices addressed by constant index tuples over the leading axes (``batch_dims`` 0)."""
    ids, indices = _ids(node, 0), node.const(1)
    if ids is None or ids.ndim == 0:
        return Dense(NEEDS_SHAPES)
    if indices is None:
        return Dense("GatherND indices are computed at run time")
    depth = indices.shape[-1] if indices.ndim else 0
    if node.attr("batch_dims", 0) or not 0 < depth <= ids.ndim:
        return Dense("GatherND with batch_dims or indices of this shape")
    sizes = np.array(ids.shape[:depth])
    if np.any((indices < -sizes) | (indices >= sizes)):
        return Dense(
            f"GatherND indices outside the axes {ids.shape[:depth]} (a symbolic batch is 1)"
        )
    at = np.where(indices < 0, indices + sizes, indices)
    return Move(ids[tuple(np.moveaxis(at, -1, 0))])


@op_rule("DepthToSpace", "SpaceToDepth")
@bounded
def depth_space(node: NodeView) -> Move | Dense:
    """Blocks of channels moved to space and back, in DCR or CRD order."""
    ids = _ids(node, 0)
    if ids is None or ids.ndim != 4:
        return Dense(NEEDS_SHAPES)
    b = int(node.attr("blocksize"))
    n, c, h, w = ids.shape
    if node.op_type == "SpaceToDepth":
        moved = ids.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
        return Move(moved.reshape(n, c * b * b, h // b, w // b))
    if node.attr("mode", b"DCR") in (b"CRD", "CRD"):
        moved = ids.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        moved = ids.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return Move(moved.reshape(n, c // (b * b), h * b, w * b))
