"""Units regrouped in blocks: several input channels make one output unit, or the reverse.

A block goes as a whole: each output unit is tied to the input units it holds, so the dependency
group of a block is its input units and its output units together. GroupNorm, as the exporters
write it, reshapes ``[N, C, L]`` to ``[N, G, C/G * L]`` (``C/G`` consecutive channels become one
group), runs ``InstanceNormalization`` and reshapes back: a group of channels goes whole, so the
others keep their statistics. ``DepthToSpace`` (PyTorch's ``PixelShuffle``) moves ``r * r``
channels of each output channel to space, ``SpaceToDepth`` the reverse: no attribute changes,
only the channels of the layers around them.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, attr

Blocks = tuple[np.ndarray, np.ndarray, int]
"""``(out_units, in_units, size)``: output unit ``out_units[i]`` holds (part of) input unit
``in_units[i]``; ``size`` output units."""


def sizes_known(xs: Space, shape_in: tuple | None, shape_out: tuple | None) -> bool:
    """Whether a Reshape of plain units (no ``inner``, no ``period``) has the sizes to follow.

    Both shapes are known past the batch (the batch may be symbolic) and the output has the
    units' axis: what ``in_blocks`` and ``layout``'s split of the axes after the units read.
    """
    if shape_in is None or shape_out is None or xs.inner or xs.period:
        return False
    return len(shape_out) > xs.axis and None not in shape_in[1:] and None not in shape_out[1:]


def in_blocks(xs: Space, shape_in: tuple | None, shape_out: tuple | None) -> Blocks | None:
    """The blocks of a Reshape that regroups the units' axis with the axes after it, or None.

    It keeps the axes before the units' and the units' axis where it is: ``k`` consecutive
    units become one (GroupNorm's ``[N, C, L] -> [N, G, C/G * L]``) or one becomes ``k``
    consecutive ones (``[N, G, C/G * L] -> [N, C, L]``, back). Sizes after the batch must be
    known.
    """
    if not sizes_known(xs, shape_in, shape_out):
        return None
    axis = xs.axis
    if tuple(shape_in[:axis]) != tuple(shape_out[:axis]):
        return None
    if math.prod(shape_in[axis:]) != math.prod(shape_out[axis:]):
        return None
    n_in, n_out = shape_in[axis], shape_out[axis]
    if n_in > n_out and n_in % n_out == 0:
        return np.arange(n_in) // (n_in // n_out), np.arange(n_in), n_out
    if n_out > n_in and n_out % n_in == 0:
        return np.arange(n_out), np.arange(n_out) // (n_out // n_in), n_out
    return None


def regroup(b: Builder, node: onnx.NodeProto, xs: Space, blocks: Blocks, rank: int) -> None:
    """The output's units on ``xs``'s axis, each tied to the input units of its block.

    An output unit holds a constant when every input unit of its block holds that one.
    """
    out_units, in_units, size = blocks
    out = node.output[0]
    b.tie(b.new(out, xs.axis, rank, size), out_units, xs, in_units)

    def rule(consts, arrays, pending):
        c = consts[xs.tensor][in_units]
        low, high = np.full(size, np.inf), np.full(size, -np.inf)
        np.minimum.at(low, out_units, c)
        np.maximum.at(high, out_units, c)
        consts[out] = np.where(low == high, low, NAN)

    b.rules.append(rule)


@handler("depth_space")
def _depth_space(b: Builder, node: onnx.NodeProto) -> None:
    """Channel blocks to space (``DepthToSpace``, DCR or CRD order) and back."""
    xs = b.space(node.input[0])
    r2 = int(attr(node, "blocksize", 1)) ** 2
    if xs.axis != 1 or xs.rank != 4 or xs.inner or xs.period:
        b.block(xs)
        return
    n = xs.size
    if node.op_type == "SpaceToDepth":  # output channel (i * r + j) * C + c reads channel c
        blocks = np.arange(n * r2), np.arange(n * r2) % n, n * r2
    elif n % r2:
        b.block(xs, why=f"{n} channels are not a multiple of blocksize^2 = {r2}")
        return
    elif attr(node, "mode", b"DCR") in (b"CRD", "CRD"):  # channel c * r^2 + k -> channel c
        blocks = np.arange(n) // r2, np.arange(n), n // r2
    else:  # DCR: channel k * C' + c -> channel c
        blocks = np.arange(n) % (n // r2), np.arange(n), n // r2
    regroup(b, node, xs, blocks, 4)
