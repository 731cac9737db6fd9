"""Checks of the ops that move data: between a weight and its layer, or between layers."""

from __future__ import annotations

import math

import numpy as np

from onnxprune.op_checks._base import (
    MAX_RANK,
    NodeCheck,
    broadcasts,
    clash,
    differ,
    op_check,
    show,
)


@op_check("Reshape")
def reshape(c: NodeCheck) -> None:
    """A 1-D target with at most one -1 whose size matches the input's when both are known."""
    target = c.ints(1)
    if target is None:
        return
    if target.ndim != 1 or target.size > MAX_RANK:
        raise c.fail(f"target shape must be 1-D with at most {MAX_RANK} dims, is {target.shape}")
    dims = [int(d) for d in target]
    allowzero = bool(c.attr("allowzero", 0))
    if dims.count(-1) > 1 or min(dims, default=0) < -1 or (allowzero and 0 in dims and -1 in dims):
        raise c.fail(f"target shape {dims} is not a valid reshape target")
    before = c.shape(0)
    if before is None or None in before:
        return
    if not allowzero:
        if any(d == 0 and i >= len(before) for i, d in enumerate(dims)):
            raise c.fail(f"target {dims} copies a dim the input {list(before)} does not have")
        dims = [before[i] if d == 0 else d for i, d in enumerate(dims)]
    total, known = math.prod(before), math.prod(d for d in dims if d != -1)
    fits = (known > 0 and total % known == 0) if -1 in dims else known == total
    if not fits:
        raise c.fail(f"cannot reshape {list(before)} ({total} elements) to {dims}")


@op_check("Transpose")
def transpose(c: NodeCheck) -> None:
    """``perm`` is a permutation of the input's axes."""
    perm = c.attr("perm")
    if perm is None:
        return
    perm = [int(p) for p in perm]
    shape = c.shape(0)
    rank = len(perm) if shape is None else len(shape)
    if sorted(perm) != list(range(rank)):
        raise c.fail(f"perm {perm} is not a permutation of the {rank} input axes")


@op_check("Squeeze", "Unsqueeze")
def squeeze(c: NodeCheck) -> None:
    """Axes distinct and inside the rank (of the output for Unsqueeze); squeezed dims are 1."""
    axes = c.attr("axes")
    if axes is None:
        value = c.ints(1) if c.input(1) else None
        axes = None if value is None else value.reshape(-1).tolist()
    shape = c.shape(0)
    if axes is None or shape is None:
        return
    axes = [int(a) for a in axes]
    rank = len(shape) + (len(axes) if c.node.op_type == "Unsqueeze" else 0)
    if (
        rank > 64
        or any(not -rank <= a < rank for a in axes)
        or len({a % rank for a in axes}) < len(axes)
    ):
        raise c.fail(f"axes {axes} are not distinct axes of a rank-{rank} tensor")
    if c.node.op_type == "Squeeze" and any(shape[a] not in (1, None) for a in axes):
        raise c.fail(f"axes {axes} of {list(shape)} are not all of size 1")


@op_check("DequantizeLinear")
def dequantize(c: NodeCheck) -> None:
    """One scale, or one per entry of ``axis``; a zero point shaped like the scale."""
    x, scale = c.const_shape(0), c.const_shape(1)
    if x is None or scale is None:
        return
    zero = c.const_shape(2)
    if zero is not None and zero != scale:
        raise c.fail(f"zero point of shape {list(zero)} for scales of shape {list(scale)}")
    if math.prod(scale) == 1 and len(scale) <= 1:
        return
    if len(scale) != 1:
        raise c.fail(f"scales of shape {list(scale)} (blocked quantization) are not supported")
    axis = int(c.attr("axis", 1))
    if not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {list(x)}")
    if scale[0] != x[axis]:
        raise c.fail(f"{scale[0]} scales for axis {axis} of {list(x)}")


@op_check("Expand")
def expand(c: NodeCheck) -> None:
    """A 1-D integer target the input broadcasts with, to the output's shape."""
    target = c.ints(1)
    if target is None:
        return
    if target.ndim != 1 or target.size > MAX_RANK:
        raise c.fail(f"shape must be 1-D with at most {MAX_RANK} dims, is {list(target.shape)}")
    broadcasts(c, [c.shape(0), tuple(int(d) for d in target)])


@op_check("Tile")
def tile(c: NodeCheck) -> None:
    """One repeat count >= 0 per input axis; the output their product, where known."""
    repeats, x = c.ints(1), c.shape(0)
    if repeats is None:
        return
    if repeats.ndim != 1 or (repeats < 0).any():
        raise c.fail(f"repeats {repeats.tolist()} must be a 1-D list of integers >= 0")
    if x is None:
        return
    y = c.out_shape()
    if len(x) != repeats.size:
        raise c.fail(f"{repeats.size} repeats for an input of shape {show(x)}")
    tiled = tuple(None if d is None else d * int(r) for d, r in zip(x, repeats, strict=True))
    if y is not None and clash(y, tiled):
        raise c.fail(f"repeats {repeats.tolist()} of an input {show(x)} make no {show(y)}")


@op_check("Gather")
def gather(c: NodeCheck) -> None:
    """Integer indices (a constant's are read), an axis of the input."""
    c.ints(1)
    x, axis = c.shape(0), int(c.attr("axis", 0))
    if x is not None and not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {show(x)}")


@op_check("Slice")
def slice_(c: NodeCheck) -> None:
    """Integer starts, ends, axes and steps, as many of each, no step 0."""
    given = [c.ints(i) for i in range(1, 5)]
    if c.node.attribute:  # before opset 10: attributes
        given = [np.asarray(c.attr(n), np.int64) for n in ("starts", "ends") if c.attr(n)]
    lengths = {v.size for v in given if v is not None}
    steps = given[3] if len(given) > 3 else None
    if len(lengths) > 1 or (steps is not None and (steps == 0).any()):
        shown = [None if v is None else v.tolist() for v in given]
        raise c.fail(f"starts, ends, axes, steps {shown}: one length each, no step 0")


@op_check("Concat")
def concat(c: NodeCheck) -> None:
    """Inputs of one rank, equal but along ``axis``; the output their concatenation."""
    shapes = [c.shape(i) for i in range(len(c.node.input))]
    y = c.out_shape()
    known = [s for s in (*shapes, y) if s is not None]
    if not known:
        return
    rank, axis = len(known[0]), int(c.attr("axis", 0))
    fits = all(len(s) == rank for s in known) and -rank <= axis < rank
    if fits:
        axis %= rank
        fits = all(len({s[j] for s in known} - {None}) <= 1 for j in range(rank) if j != axis)
        sizes = [None if s is None else s[axis] for s in shapes]
        if y is not None and None not in sizes:
            fits = fits and not differ(y[axis], sum(sizes))
    if not fits:
        shown = ", ".join(show(s) for s in shapes)
        raise c.fail(f"inputs of shapes {shown} do not concatenate on axis {axis} to {show(y)}")


@op_check("Split")
def split(c: NodeCheck) -> None:
    """An axis of the input; one size >= 0 per output, adding up to the axis, where known."""
    sizes = c.attr("split")
    sizes = np.asarray(sizes if sizes is not None else c.ints(1))
    x = c.shape(0)
    axis = int(c.attr("axis", 0))
    if x is not None and not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {show(x)}")
    if sizes.ndim == 0:  # even split, or sizes computed at run time
        return
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or (sizes < 0).any():
        raise c.fail(f"split sizes {sizes.tolist()} must be a 1-D list of integers >= 0")
    total = None if x is None else x[axis]
    if sizes.size != len(c.node.output) or differ(total, int(sizes.sum())):
        raise c.fail(
            f"split {sizes.tolist()} of axis {axis} of {show(x)} into {len(c.node.output)}"
        )


@op_check("Pad")
def pad(c: NodeCheck) -> None:
    """Integer pads, two per padded axis; a known mode."""
    mode = c.attr("mode", b"constant")
    if mode not in (b"constant", b"reflect", b"edge", b"wrap"):
        raise c.fail(f"mode={mode!r} is not constant, reflect, edge or wrap")
    pads = c.attr("pads")
    pads = np.asarray(pads if pads is not None else c.ints(1))
    if pads.ndim == 0:  # computed at run time
        return
    axes, x = c.ints(3), c.shape(0)
    count = axes.size if axes is not None else (None if x is None else len(x))
    if (
        pads.ndim != 1
        or pads.dtype.kind not in "iu"
        or (count is not None and pads.size != 2 * count)
    ):
        raise c.fail(f"pads {pads.tolist()} must be two integers per padded axis")


REDUCTIONS = (
    *("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"),
    *("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"),
)


@op_check(*REDUCTIONS)
def reduce(c: NodeCheck) -> None:
    """Integer axes (an attribute, or input 1 from opset 18), distinct axes of the input."""
    axes = c.attr("axes")
    if axes is None and c.input(1):
        value = c.ints(1)
        axes = None if value is None else value.reshape(-1).tolist()
    _axes_of(c, [int(a) for a in axes or ()])


@op_check("Softmax", "LogSoftmax", "Hardmax", "ArgMax", "ArgMin", "LayerNormalization")
def axis(c: NodeCheck) -> None:
    """``axis`` is an axis of the input."""
    # the defaults (0, 1 or -1 by op and opset) are axes of any input of rank 2 or more
    _axes_of(c, [int(c.attr("axis", -1))])


def _axes_of(c: NodeCheck, axes: list[int]) -> None:
    x = c.shape(0)
    if x is None:
        return
    rank = len(x)
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) < len(axes):
        raise c.fail(f"axes {axes} are not distinct axes of an input of shape {show(x)}")
