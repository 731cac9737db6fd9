"""Slice and Expand along other axes than the units': the units pass through.

LLaMA's rotary embedding slices each head's channels in halves (``rotate_half``); grouped-query
attention expands each K/V head to ``n_rep`` copies on a new axis. Neither touches the unit
axis, so the output holds the input's units. An ``Expand`` whose shape names the unit count
gets that entry rewritten; a shape computed at run time (the TorchScript exporter computes it
with ``Where``) becomes the output's static shape. An Expand repeating each unit along the next
axis, read by nothing else, is a ``Repeat``: a Reshape merging the copies into units of their
own (``heads.merge_heads``) lets copies go, the same number of each unit. A Tile with
constant repeats passes the units, or repeats them along their axis as merged slots.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Repeat, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops import interleaved, picking
from onnxprune.structured.ops._common import attr, input_at, pass_through, set_dim


@handler("slice")
def _slice(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    axes = _slice_axes(b, node)
    if axes is not None and xs.axis in {a % xs.rank for a in axes}:
        if not picking.slice_units(b, node, xs):  # a range of the units: Falcon's query heads
            b.block(xs)
        return
    if xs.inner or axes is None:
        b.block(xs, why=None if axes is not None else "its axes are computed at run time")
        return
    pass_through(b, node, xs, keeps=True)


def _slice_axes(b: Builder, node: onnx.NodeProto) -> list[int] | None:
    """The axes a Slice cuts (attributes before opset 10, inputs after), or None."""
    if b.opset < 10:
        axes, starts = attr(node, "axes", None), attr(node, "starts", [])
        return list(range(len(starts))) if axes is None else list(axes)
    if input_at(node, 3):
        axes = b.const(node.input[3])
        return None if axes is None else axes.reshape(-1).tolist()
    shape = b.shape(node.input[1])
    return None if shape is None or None in shape else list(range(int(np.prod(shape))))


@handler("broadcast")
def _expand(b: Builder, node: onnx.NodeProto) -> None:
    """An Expand leaving the unit axis as it is (its size there is the unit count), a Tile."""
    xs, shape_out = b.space(node.input[0]), b.shape(node.output[0])
    if node.op_type == "Tile" and not xs.inner:
        _tile(b, node, xs)
        return
    if node.op_type != "Expand" or xs.inner or shape_out is None:
        b.block(xs)
        return
    axis = xs.axis + len(shape_out) - xs.rank
    if shape_out[axis] != xs.size:
        b.block(xs, why="it broadcasts the unit axis")
        return
    target, value = node.input[1], b.const(node.input[1])
    owner = None if b.owned(target) else node
    if value is None:  # computed at run time: the output's static shape does (batch 1 kept)
        static = [1 if i == 0 and d is None else d for i, d in enumerate(shape_out)]
        if None in static:
            b.block(xs, why=b.computed(f"shape {target!r}"))
            return
        value, owner = np.array(static, np.int64), node
    value = value.reshape(-1)
    index = axis - (len(shape_out) - value.size)
    if index >= 0 and value[index] != 1:
        if value[index] != xs.size:
            b.block(xs, why=f"shape {value.tolist()} does not keep the unit axis")
            return
        b.edits.append(set_dim(target, index, node.output[0], value, node=owner))
    pass_through(b, node, xs, keeps=True, axis=axis, rank=len(shape_out))
    shape_in = b.shape(node.input[0])
    after = axis + 1 - (len(shape_out) - len(shape_in or ()))  # that axis in the input
    copies = shape_out[axis + 1] if axis + 1 < len(shape_out) else None
    if shape_in and 0 <= after < len(shape_in) and shape_in[after] == 1 and (copies or 0) > 1:
        index += 1
        if index >= 0 and value[index] == copies and b.uses[node.output[0]] == 1:
            b.repeats[node.output[0]] = Repeat(target, index, value, owner)


def _tile(b: Builder, node: onnx.NodeProto, xs: Space) -> None:
    """A Tile with constant repeats: the units pass, or are repeated along their axis.

    Along their axis each of ``n`` units fills every ``n``-th slot of the output
    (``interleaved.slots``); the repeats stay as they are.
    """
    repeats = b.const(node.input[1])
    shape_in = b.shape(node.input[0])
    if repeats is None or shape_in is None or shape_in[xs.axis] != xs.size:
        b.block(xs, why=b.computed(f"repeats {node.input[1]!r}") if repeats is None else None)
        return
    times = int(repeats.reshape(-1)[xs.axis])
    if times == 1:
        pass_through(b, node, xs, keeps=True)
    else:
        interleaved.slots(b, xs, node.output[0], xs.axis, xs.size * times)
