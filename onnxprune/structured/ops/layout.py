"""Spatial and layout ops: pooling, reductions, resize, pad, flatten/reshape, concat, split."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops import heads, interleaved, leading, shuffle
from onnxprune.structured.ops._common import (
    NAN,
    attr,
    input_at,
    padded,
    pass_through,
    set_dim,
    used_extra,
)
from onnxprune.structured.ops.blocks import in_blocks, regroup, sizes_known
from onnxprune.weights import sliced


@handler("pool", "global_pool")
def _pool(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    if xs.axis != 1 or xs.rank < 3 or used_extra(b, node):
        b.block(xs)
        return
    op = node.op_type
    varies = "Lp" in op or (
        op == "AveragePool" and padded(node) and attr(node, "count_include_pad", 0)
    )
    pass_through(b, node, xs, keeps=not varies)


@handler("reduce")
def _reduce(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    axes = _axes(b, node)
    if not axes:  # every axis, unless computed at run time or asked to do nothing
        computed = axes is None and input_at(node, 1)
        everything = not computed and not attr(node, "noop_with_empty_axes", 0)
        why = "its axes are computed at run time" if computed else None
        b.block(xs, why="it reduces over every axis, the units' too" if everything else why)
        return
    axes = sorted({int(a) % xs.rank for a in axes})
    if xs.axis in axes:  # a norm's mean of squares, a softmax's max over classes
        b.block(xs, why="it reduces over the units' axis")
        return
    keepdims = attr(node, "keepdims", 1)
    axis = xs.axis if keepdims else xs.axis - sum(a < xs.axis for a in axes)
    rank = xs.rank if keepdims else xs.rank - len(axes)
    pass_through(
        b,
        node,
        xs,
        keeps=node.op_type in ("ReduceMean", "ReduceMax", "ReduceMin"),
        axis=axis,
        rank=rank,
    )


def _axes(b: Builder, node: onnx.NodeProto) -> list[int] | None:
    """A node's ``axes``: its attribute (older opsets) or its constant second input, or None."""
    axes = attr(node, "axes", None)
    if axes is None and input_at(node, 1):
        k = b.const(node.input[1])
        axes = None if k is None else k.reshape(-1).tolist()
    return None if axes is None else [int(a) for a in axes]


@handler("transpose")
def _transpose(b: Builder, node: onnx.NodeProto) -> None:
    """Units move with their axis (NHWC exports wrap every Conv in Transposes)."""
    xs = b.space(node.input[0])
    perm = list(attr(node, "perm", range(xs.rank - 1, -1, -1)))
    if sorted(perm) != list(range(xs.rank)):
        b.block(xs)
    elif xs.inner:
        shuffle.swap(b, node, xs, perm)
    else:
        pass_through(b, node, xs, keeps=True, axis=perm.index(xs.axis))


@handler("squeeze")
def _squeeze(b: Builder, node: onnx.NodeProto) -> None:
    """Axes of size 1 come or go around the unit axis, which keeps its units."""
    xs = b.space(node.input[0])
    axes = _axes(b, node)
    if node.op_type == "Squeeze":
        shape = b.shape(node.input[0])
        if axes is None and input_at(node, 1) == "" and shape is not None:
            axes = [i for i, d in enumerate(shape) if d == 1]  # no axes: every axis of size 1
        axes = None if axes is None else sorted({a % xs.rank for a in axes})
        if axes is None or xs.axis in axes:
            b.block(xs)
            return
        axis, rank = xs.axis - sum(a < xs.axis for a in axes), xs.rank - len(axes)
    else:
        if not axes:
            b.block(xs)
            return
        rank = xs.rank + len(axes)
        inserted = {a % rank for a in axes}
        axis = [i for i in range(rank) if i not in inserted][xs.axis]
    pass_through(b, node, xs, keeps=True, axis=axis, rank=rank)


@handler("resize")
def _resize(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    if input_at(node, 3) and node.op_type == "Resize":
        _resize_to_sizes(b, node, xs)
        return
    scales_name = node.input[1] if node.op_type == "Upsample" else input_at(node, 2)
    scales = b.const(scales_name) if scales_name else attr(node, "scales", None)
    if scales is None or b.space(scales_name or "") is not None:
        b.block(xs)
        return
    scales = np.asarray(scales, np.float64).reshape(-1)
    if scales.size != xs.rank or scales[xs.axis] != 1 or scales[0] != 1:
        b.block(xs)
        return
    pass_through(b, node, xs, keeps=True)


def _resize_to_sizes(b: Builder, node: onnx.NodeProto, xs: Space) -> None:
    """A Resize to constant ``sizes`` that keep the units' axis: the units pass.

    SegFormer's decode head upsamples each stage to one size; the units' entry of ``sizes``
    is rewritten to the units kept (in a copy when other nodes read it: the dynamo exporter
    stores one ``[1, C, H, W]`` for the Resizes and Reshapes alike).
    """
    name = node.input[3]
    sizes = b.const(name)
    if sizes is None or attr(node, "axes", None) is not None:
        b.block(xs, why=b.computed(f"sizes {name!r}") if sizes is None else None)
        return
    sizes = sizes.reshape(-1)
    if sizes.size != xs.rank or sizes[xs.axis] != xs.size:
        b.block(xs, why=f"sizes {sizes.tolist()} resize the units' axis")
        return
    pass_through(b, node, xs, keeps=True)
    owner = None if b.owned(name) else node  # sizes other nodes read too: a copy of its own
    b.edits.append(set_dim(name, xs.axis, xs.tensor, sizes, node=owner, slot=3))


@handler("pad")
def _pad(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    pads = attr(node, "pads", None)
    if pads is None:
        k = b.const(input_at(node, 1))
        pads = None if k is None else k.reshape(-1).tolist()
    if pads is None or input_at(node, 3) or len(pads) != 2 * xs.rank:
        b.block(xs)
        return
    if pads[xs.axis] or pads[xs.axis + xs.rank]:
        b.block(xs)
        return
    value = attr(node, "value", 0.0)
    if input_at(node, 2):
        k = b.const(node.input[2])
        if k is None:
            b.block(xs)
            return
        value = float(k.reshape(-1)[0]) if k.size else 0.0
    constant = attr(node, "mode", b"constant") == b"constant"
    out = node.output[0]
    b.alias(out, xs)

    def rule(consts, arrays, pending):
        c = consts[xs.tensor]
        consts[out] = np.where((not constant) | (c == value), c, NAN)

    b.rules.append(rule)


@handler("reshape")
def _flatten(b: Builder, node: onnx.NodeProto) -> None:
    """Flatten, or a Reshape that is one: units spread over consecutive features."""
    xs, out = b.space(node.input[0]), node.output[0]
    if xs.period and interleaved.regroup(b, node, xs):  # units merged with the batch, back
        return
    if node.op_type == "Reshape" and shuffle.regroup(b, node, xs):
        return
    if leading.regroup_leading(b, node, xs) or heads.split_heads(b, node, xs):
        return
    if interleaved.regroup(b, node, xs):
        return
    shape_in, shape_out = b.shape(node.input[0]), b.shape(out)
    start = _flattened_from(node, shape_in, shape_out)
    if start is None and heads.merge_heads(b, node, xs):
        return
    target = input_at(node, 1) if node.op_type == "Reshape" else ""
    if target and b.const(target) is None:
        b.block(xs, why=b.computed(f"target shape {target!r}"))
        return
    owner = None if not target or b.owned(target) else node  # a shared target: copied
    if start is None:
        if not _after_units(b, node, xs, shape_in, shape_out, owner):
            b.block(xs, why=_reshaped(b, xs, shape_in, shape_out))
        return
    if start > xs.axis:  # trailing axes merged; the unit axis stays where it is
        pass_through(b, node, xs, keeps=True, rank=start + 1)
        if target:
            b.edits.append(set_dim(target, xs.axis, xs.tensor, b.const(target), node=owner))
        return
    _spread(b, node, xs, start, shape_in[start:], owner)


def _spread(b: Builder, node, xs: Space, start: int, dims: tuple, owner) -> None:
    """Axes ``start``.. (``dims``), the units' among them, merged into one.

    Each unit spreads over the consecutive features it becomes (``Flatten`` before a Gemm).
    """
    out, target = node.output[0], input_at(node, 1) if node.op_type == "Reshape" else ""
    if start < 1 or any(d is None for d in dims):
        b.block(xs, why=_reshaped(b, xs, b.shape(node.input[0]), b.shape(out)))
        return
    n = math.prod(dims)
    space = b.new(out, start, start + 1, n)
    units = np.broadcast_to(
        np.arange(xs.size).reshape([-1 if i == xs.axis - start else 1 for i in range(len(dims))]),
        dims,
    )
    b.tie(space, np.arange(n), xs, units.reshape(-1))
    if target:
        b.edits.append(set_dim(target, start, out, b.const(target), node=owner))
    spread = units.reshape(-1)

    def rule(consts, arrays, pending):
        consts[out] = consts[xs.tensor][spread]

    b.rules.append(rule)


def _reshaped(b: Builder, xs: Space, shape_in: tuple | None, shape_out: tuple | None) -> str:
    """Why a Reshape the rules do not follow blocks: the shapes it maps, or what is unknown.

    MobileViT unfolds its patches into the batch (``[1, 16, 8, 8] -> [32, 2, 4, 2]``): the
    shapes say the channels are merged with other axes there.
    """
    if shape_in is None or shape_out is None:
        return f"its {'input' if shape_in is None else 'output'} shape is unknown{b.unfixed()}"
    shown = [
        "[" + ", ".join("?" if d is None else str(d) for d in s) + "]"
        for s in (shape_in, shape_out)
    ]
    return f"it regroups the units' axis {xs.axis} ({shown[0]} -> {shown[1]})"


def _after_units(b: Builder, node, xs: Space, shape_in, shape_out, owner) -> bool:
    """A Reshape regrouping only the units' axis and those after it: followed if it can be.

    The axes after the units' split or merged, the units pass (``_split_after``); the units'
    axis regrouped with them in blocks, each block goes whole (``blocks.in_blocks``). The
    target's entry on the units' axis is rewritten. False when it is neither.
    """
    blocks = None
    if not _split_after(xs, shape_in, shape_out):
        blocks = in_blocks(xs, shape_in, shape_out)
        if blocks is None:
            return False
    if blocks is None:
        pass_through(b, node, xs, keeps=True, rank=len(shape_out))
    else:
        regroup(b, node, xs, blocks, len(shape_out))
    target = input_at(node, 1)
    if target:
        units = xs.tensor if blocks is None else node.output[0]
        b.edits.append(set_dim(target, xs.axis, units, b.const(target), node=owner))
    return True


def _split_after(xs: Space, shape_in: tuple | None, shape_out: tuple | None) -> bool:
    """Whether a Reshape keeps every axis up to the units' and only regroups those after it.

    SegFormer's Mix-FFN reshapes its hidden channels ``[B, C, H*W]`` to ``[B, C, H, W]`` for
    a depthwise Conv: each channel keeps its positions, so the channels pass through. The
    sizes after the batch must be known (the batch may be symbolic: the rest then fixes it).
    """
    if not sizes_known(xs, shape_in, shape_out):
        return False
    head = xs.axis + 1
    same = tuple(shape_in[:head]) == tuple(shape_out[:head])
    return same and math.prod(shape_in[head:]) == math.prod(shape_out[head:])


def _flattened_from(node: onnx.NodeProto, shape_in: tuple | None, shape_out: tuple | None):
    """The first axis the op merges into one (its output is ``in[:start] + [prod(in[start:])]``)."""
    if shape_in is None or shape_out is None:
        return None
    if node.op_type == "Flatten":  # [prod(in[:axis]), prod(in[axis:])]: only axis 1 keeps the batch
        return 1 if attr(node, "axis", 1) % max(len(shape_in), 1) == 1 else None
    start = len(shape_out) - 1
    if start < 1 or tuple(shape_in[:start]) != tuple(shape_out[:start]):
        return None
    rest = shape_in[start:]
    if any(d is None for d in rest) or shape_out[start] != math.prod(rest):
        return None
    return start


@handler("concat")
def _concat(b: Builder, node: onnx.NodeProto) -> None:
    spaces = [b.space(name) for name in node.input]
    first = next(s for s in spaces if s is not None)
    axis = attr(node, "axis", 0) % first.rank
    sizes = [_dim(b, name, axis) for name in node.input]
    if axis != first.axis or any(s is not None and s.axis != axis for s in spaces) or None in sizes:
        if axis != first.axis and all(s is not None and s.size == first.size for s in spaces):
            _binary_like(b, node, first, spaces)
            return
        for s in spaces:
            b.block(s)
        return
    out = node.output[0]
    space = b.new(out, axis, first.rank, sum(sizes))
    offset = 0
    for s, size in zip(spaces, sizes, strict=True):
        index = np.arange(offset, offset + size)
        if s is None:
            b.block(space, index)
        else:
            b.tie(space, index, s, np.arange(size))
        offset += size

    def rule(consts, arrays, pending):
        consts[out] = np.concatenate(
            [consts[s.tensor] if s else np.full(n, NAN) for s, n in zip(spaces, sizes, strict=True)]
        )

    b.rules.append(rule)


def _binary_like(b: Builder, node: onnx.NodeProto, first: Space, spaces: list) -> None:
    """Concat along another axis: every input holds the same units."""
    out = node.output[0]
    b.alias(out, first)
    for s in spaces:
        if s.base != first.base:
            b.tie(first, np.arange(first.size), s, np.arange(s.size))

    def rule(consts, arrays, pending):
        stacked = np.stack([consts[s.tensor] for s in spaces])
        consts[out] = np.where((stacked == stacked[0]).all(axis=0), stacked[0], NAN)

    b.rules.append(rule)


def _dim(b: Builder, name: str, axis: int) -> int | None:
    space = b.space(name)
    if space is not None:
        return space.size
    shape = b.shape(name)
    return shape[axis] if shape is not None and len(shape) > axis else None


@handler("split")
def _split(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    axis = attr(node, "axis", 0) % xs.rank
    outs = list(node.output)
    sizes = [_dim(b, o, axis) if o else None for o in outs]
    split_input = input_at(node, 1)
    if split_input and not b.owned(split_input):
        b.block(xs)
        return
    if axis != xs.axis:
        if any(not o for o in outs):
            b.block(xs)
            return
        for o in outs:
            pass_through(b, _as_output(node, o), xs, keeps=True)
        return
    if None in sizes or sum(sizes) != xs.size:
        b.block(xs)
        return
    offset, parts = 0, []
    for o, size in zip(outs, sizes, strict=True):
        space = b.new(o, axis, xs.rank, size)
        b.tie(space, np.arange(size), xs, np.arange(offset, offset + size))
        parts.append((o, offset, size))
        offset += size

    def rule(consts, arrays, pending):
        for o, start, size in parts:
            consts[o] = consts[xs.tensor][start : start + size]

    b.rules.append(rule)
    b.edits.append(_split_sizes(node, outs, split_input, b.opset))


def _split_sizes(node: onnx.NodeProto, outs: list[str], split_input: str, opset: int):
    """Rewrite a Split's sizes (attribute before opset 13, input after) to the kept units."""

    def edit(kept, arrays, fresh):
        if all(kept(o).all() for o in outs):  # sizes unchanged: the Split stays as it was
            return
        new = np.array([int(kept(o).sum()) for o in outs], np.int64)
        for a in list(node.attribute):
            if a.name == "split":
                a.ClearField("ints")
                a.ints.extend(new.tolist())
                return
            if a.name == "num_outputs":
                node.attribute.remove(a)
        if split_input:
            arrays[split_input] = new
        elif opset < 13:
            node.attribute.append(helper.make_attribute("split", new.tolist()))
        else:
            node.input.extend([""] * (2 - len(node.input)))
            node.input[1] = fresh(f"{node.name or outs[0]}_split")
            arrays[node.input[1]] = new

    return edit


def _as_output(node: onnx.NodeProto, output: str) -> onnx.NodeProto:
    """A view of ``node`` whose first output is ``output`` (for ``pass_through``)."""
    view = onnx.NodeProto()
    view.CopyFrom(node)
    del view.output[:]
    view.output.append(output)
    return view


@handler("no_signal")
def _shape_of(b: Builder, node: onnx.NodeProto) -> None:
    """A ``Shape`` read only at other axes than the units' does not see them go.

    Exporters read the batch size so (an LSTM's initial state); any other use blocks the units.
    """
    xs = b.space(node.input[0])
    if node.op_type != "Shape" or not _reads_other_dims(b, node, xs):
        b.block(xs, why=f"its output depends on the number of units{b.unfixed()}")


def _reads_other_dims(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Every reader of the ``Shape``'s output picks constant dims but the unit axis.

    A ``Gather`` of some dims (an LSTM's batch size), or a ``Slice`` of them (the sequence
    lengths of a causal mask, read from a ``[B, H, T, D]`` key).
    """
    from onnxprune.weights import ConstantResolver

    if attr(node, "end", None) is not None:
        return False
    start = attr(node, "start", 0) % xs.rank
    out, resolver = node.output[0], ConstantResolver(b.graph)
    readers = [n for n in b.graph.node if out in n.input]
    if len(readers) != b.uses[out] or any(o.name == out for o in b.graph.output):
        return False
    for reader in readers:
        dims = _dims_read(resolver, reader, out, xs.rank - start)
        if dims is None or (start + dims == xs.axis).any():
            return False
    return True


def _dims_read(resolver, reader: onnx.NodeProto, out: str, length: int) -> np.ndarray | None:
    """Which entries of a ``Shape`` output ``length`` long ``reader`` reads (None: unknown)."""
    if reader.input[0] != out or out in reader.input[1:]:
        return None
    if reader.op_type == "Gather":
        index = resolver.value(reader.input[1])
        if index is None or attr(reader, "axis", 0) != 0:
            return None
        return np.asarray(index).reshape(-1) % length
    if reader.op_type != "Slice" or len(reader.input) < 3:  # opset 1-9 Slices take attributes
        return None
    given = [resolver.value(name) if name else None for name in reader.input[1:5]]
    if any(name and value is None for name, value in zip(reader.input[1:5], given, strict=False)):
        return None
    cut = sliced(given, 1, 0, length)
    return None if cut is None else cut[2]
