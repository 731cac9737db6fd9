"""Channel shuffle: a Reshape splitting channels into groups, a Transpose, a Reshape back.

``Reshape [N, C, H, W] -> [N, g, C/g, H, W]``, read by a Transpose swapping the two axes, gives a
space over two axes (``Space.inner``); every group must keep as many channels as the others, in
the same places, so the k-th channel of every group goes together. That Transpose reorders the
units, and the ``Reshape`` merging the axes back ends the two-axis space: ShuffleNet's shuffle is
followed unit by unit. Reshape targets are rewritten; anything else reading a two-axis space
blocks it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.ops._common import attr, input_at, pass_through, set_dim


def regroup(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Reshape that splits the unit axis in two or merges a two-axis space back.

    Returns False (nothing done) for any other Reshape; blocks ``xs`` when it is a two-axis
    space the Reshape does not merge.
    """
    target = input_at(node, 1)
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    known = shape_in is not None and shape_out is not None
    owned = b.owned(target) and b.const(target) is not None
    u = xs.axis
    if known and owned and not xs.inner and splits(shape_in, shape_out, u) and _swapped(b, node, u):
        outer, inner = shape_out[u], shape_out[u + 1]
        pass_through(b, node, xs, keeps=True, rank=xs.rank + 1, inner=inner)
        k = np.tile(np.arange(inner), outer)  # the k-th channel of every group: one unit
        b.tie(xs, np.arange(xs.size), xs, k)
        b.edits.append(set_dim(target, u + 1, node.output[0], b.const(target), per=outer))
        return True
    if not xs.inner:
        return False
    if known and owned and splits(shape_out, shape_in, u):
        pass_through(b, node, xs, keeps=True, rank=xs.rank - 1, inner=0)
        b.edits.append(set_dim(target, u, node.output[0], b.const(target)))
    else:
        b.block(xs)
    return True


def _swapped(b: Builder, node: onnx.NodeProto, u: int) -> bool:
    """Every reader of the Reshape's output is a Transpose swapping the two axes (a shuffle).

    Anything else splits the channels into heads (``heads.split_heads``).
    """
    out = node.output[0]
    readers = [n for n in b.graph.node if out in n.input]
    swap = [*range(u), u + 1, u]
    return bool(readers) and all(
        n.op_type == "Transpose" and list(attr(n, "perm", []))[: u + 2] == swap for n in readers
    )


def splits(whole: tuple, parts: tuple, u: int) -> bool:
    """``parts`` is ``whole`` with axis ``u`` split in two (static sizes there)."""
    if len(parts) != len(whole) + 1 or None in (whole[u], parts[u], parts[u + 1]):
        return False
    same = tuple(whole[:u]) == tuple(parts[:u]) and tuple(whole[u + 1 :]) == tuple(parts[u + 2 :])
    return same and math.prod(parts[u : u + 2]) == whole[u]


def swap(b: Builder, node: onnx.NodeProto, xs: Space, perm: list[int]) -> None:
    """A Transpose of a two-axis space: only one swapping its two axes (the shuffle) is followed."""
    u = xs.axis
    if perm != [*range(u), u + 1, u, *range(u + 2, xs.rank)]:
        b.block(xs)
        return
    outer, inner = xs.size // xs.inner, xs.inner
    out = node.output[0]
    space = b.new(out, u, xs.rank, xs.size, inner=outer)
    k, g = np.meshgrid(np.arange(inner), np.arange(outer), indexing="ij")
    source = (g * inner + k).reshape(-1)  # unit (k, g) after the swap was (g, k) before
    b.tie(space, np.arange(xs.size), xs, source)

    def rule(consts, arrays, pending):
        consts[out] = consts[xs.tensor][source]

    b.rules.append(rule)
