"""Attention heads: the unit axis split into heads, mixed within each head, merged back.

Multi-head attention as the torch exporters write it (BERT, GPT-2, LLaMA): Q, K and V
projections, ``Reshape [B, T, C] -> [B, T, H, D]``, ``Transpose``, ``MatMul(Q, K^T)``, a scale
and a mask, ``Softmax``, ``MatMul(., V)``, ``Transpose``, ``Reshape`` back to ``[B, T, C]`` and the
output projection. The Reshape that splits the unit axis makes the *heads* its units (axis H;
D is then an axis like the sequence axis), each head tied to its D channels; the two MatMuls
mix within a head only (the heads are a batch axis there), so they tie the heads of their
operands; the Reshape merging the heads back spreads each head over its D channels again. A
head's columns of Q, K and V (fused, GPT-2's ``c_attn`` and its Split, or not), their biases and
its rows of the output projection are one dependency group; the Reshape targets' head or
channel entries are rewritten.

Grouped-query attention (LLaMA with fewer K/V heads) repeats each K/V head for ``n_rep`` query
heads: ``Unsqueeze``, ``Expand`` to ``[B, KV, n_rep, T, D]``, ``Reshape`` merging KV and n_rep.
Query head ``j`` reads K/V head ``j // n_rep``: it lives within that head (``structured.nests``),
so a K/V head goes with all of its query heads, and query heads go as long as every K/V head
left keeps the same number of them, the new ``n_rep`` (the Expand's and the Reshape's targets
are rewritten). The ratio stays valid either way.

The masked model (``structured_prune``'s ``masked``) zeroes a removed head's Q, K and V columns
and its rows of the output projection. The zero rows are what make it equal the cut model: Q
and K at zero alone would give the head a uniform softmax, not a zero output.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, attr, reshape_target, set_dim


def split_heads(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Reshape splitting the unit axis C into heads and channels ``[H, D]``.

    The axes before may be merged or split too (GPT-2's dynamo export goes from ``[B*T, C]``);
    the axes after stay. Returns False (nothing done) for any other Reshape, and for a split
    into one head (the units only regroup: ``interleaved``); blocks ``xs`` when its target
    cannot follow the heads (computed at run time, or a 0 copying the unit axis).
    """
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    if node.op_type != "Reshape" or xs.inner or shape_in is None or shape_out is None:
        return False
    u, value = xs.axis, b.const(node.input[1])
    tail = tuple(shape_in[u + 1 :])
    end = len(shape_out) - len(tail)  # the output's axes before the tail
    if None in tail or tuple(shape_out[end:]) != tail:
        return False
    found = _heads_axis(shape_in, shape_out, u, end, value, xs.size)
    if found is None:  # one head (the units only regroup: ``interleaved``), or no split
        return False
    v, heads = found
    width = xs.size // heads
    target, value = reshape_target(b, node, xs, (u, *range(v, end)))
    if value is None:
        return True
    out = node.output[0]
    space = b.new(out, v, len(shape_out), heads)
    b.tie(space, np.arange(xs.size) // width, xs, np.arange(xs.size))
    if value[v] > 0:
        b.edits.append(set_dim(target, v, out, value, node=None if b.owned(target) else node))

    def rule(consts, arrays, pending):
        c = consts[xs.tensor].reshape(heads, width)
        consts[out] = np.where((c == c[:, :1]).all(axis=1), c[:, 0], NAN)

    b.rules.append(rule)
    return True


def _heads_axis(
    shape_in: tuple, shape_out: tuple, u: int, end: int, target: np.ndarray | None, size: int
) -> tuple[int, int] | None:
    """The heads axis ``v`` of a split of ``size`` units into ``shape_out[v:end]``, and its size.

    The axes after the heads' (``v + 1`` to ``end``) hold a head's channels: one (``[H, D]``),
    or several when the channels of Q, K and V are interleaved per head (BLOOM's fused
    ``query_key_value`` viewed as ``[H, 3, D]``). The fewest such axes whose sizes are known
    and give ``size`` with the heads win. None when no split fits.
    """
    width = 1
    for v in range(end - 2, -1, -1):
        inner = shape_out[v + 1]
        if not inner:  # unknown (None) or empty
            return None
        width *= inner
        if width >= size:
            return None
        heads = _size(shape_in, shape_out, v, u, target, size // width)
        if heads is not None and heads * width == size:
            return v, heads
    return None


def merge_heads(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Reshape merging the unit axis with axes right after it, the axes after kept.

    ``[B, T, H, D] -> [B, T, H*D]`` (heads back to channels; the axes before may be merged or
    split too) and ``[B, KV, n, T, D] -> [B, KV*n, T, D]`` (K/V heads repeated for their query
    heads): output unit ``i`` is input unit ``i // prod(merged axes)``, tied to it, or living
    within it when the merged axis holds an Expand's copies (``Repeat``). Returns False for
    any other Reshape.
    """
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    if node.op_type != "Reshape" or xs.inner or shape_in is None or shape_out is None:
        return False
    u, value = xs.axis, b.const(node.input[1])
    for k in range(1, xs.rank - u):
        rest, tail = tuple(shape_in[u + 1 : u + 1 + k]), tuple(shape_in[u + 1 + k :])
        v = len(shape_out) - len(tail) - 1
        if v < 0 or None in rest or None in tail or tuple(shape_out[v + 1 :]) != tail:
            continue
        n = xs.size * math.prod(rest)
        if _size(shape_in, shape_out, v, u, value, n) == n:
            break
    else:
        return False
    target, value = reshape_target(b, node, xs, (u, v))
    if value is None:
        return True
    per, out = n // xs.size, node.output[0]
    space = b.new(out, v, len(shape_out), n)
    repeat = b.repeats.get(xs.tensor) if k == 1 else None
    if repeat is None:
        b.tie(space, np.arange(n), xs, np.arange(n) // per)
    else:  # fewer copies of every unit: rewrite the Expand's count
        b.nest(space, xs, np.arange(n) // per)
        b.edits.append(
            set_dim(repeat.target, repeat.index, out, repeat.shape, xs.tensor, repeat.node)
        )
    if value[v] > 0:
        b.edits.append(set_dim(target, v, out, value, node=None if b.owned(target) else node))
    b.rules.append(
        lambda consts, arrays, pending: consts.__setitem__(out, np.repeat(consts[xs.tensor], per))
    )
    return True


def _size(
    shape_in: tuple, shape_out: tuple, v: int, u: int, target: np.ndarray | None, size: int
) -> int | None:
    """Output axis ``v``'s size: inferred, or ``size`` where a -1 stands for it.

    Inference leaves a -1 open when the batch is symbolic (a TorchScript export whose token
    type ids are expanded at run time): it is ``size`` when the axes before ``v`` hold as many
    elements as those before ``u`` in the input, the batch counted as 1 (as the analysis does).
    """
    if shape_out[v] is not None:
        return shape_out[v]
    if target is None or target.size != len(shape_out) or target.reshape(-1)[v] != -1:
        return None
    before = [1 if i == 0 and d is None else d for i, d in enumerate(shape_in[:u])]
    if None in before or None in shape_out[:v]:
        return None
    return size if math.prod(before) == math.prod(shape_out[:v]) else None


def batched_matmul(b: Builder, node: onnx.NodeProto) -> bool:
    """A MatMul of two activations whose units are on a batch axis (heads): they go together.

    ``MatMul(Q, K^T)`` and ``MatMul(P, V)`` work within each head. With multi-query attention
    (Falcon) one K/V head is broadcast to every query head: the query heads live within it
    (``structured.nests``), as grouped-query attention's do. Returns False (nothing done)
    unless both inputs hold units at the same batch axis, as many, or one on one side.
    """
    a, c = (b.space(name) for name in node.input)
    rank = b.rank(node.output[0])
    if a is None or c is None or not rank or a.inner or c.inner:
        return False
    back = a.rank - a.axis  # the units' axis counted from the end
    if back != c.rank - c.axis or back <= 2:
        return False
    if a.size != c.size and (min(a.size, c.size) != 1 or a.period or c.period):
        return False
    out = node.output[0]
    many, one = (a, c) if a.size >= c.size else (c, a)
    b.alias(out, many, axis=rank - back, rank=rank)
    if many.size > one.size:  # one head for all: the others live within it
        b.nest(many, one, np.zeros(many.size, np.int64))
    elif a.base != c.base:
        b.tie(a, np.arange(a.size), c, np.arange(c.size))

    def rule(consts, arrays, pending):  # a head of zeros on either side gives zeros
        zero = (consts[a.tensor] == 0) | (consts[c.tensor] == 0)
        consts[out] = np.where(zero, 0.0, NAN)

    b.rules.append(rule)
    return True


def unpaired(b: Builder, node: onnx.NodeProto) -> str:
    """Why ``batched_matmul`` does not follow a MatMul of two activations (the blocked reason).

    One operand holds no units (whatever computes it did not carry them: DeBERTa's relative
    positions, read in its first layer straight from a folded constant), or both do, but not
    on the same batch axis (a product over the units mixes them).
    """
    spaces = [b.space(name) for name in node.input]
    if None in spaces:
        name = node.input[spaces.index(None)]
        return f"its operand {name!r} is computed without units to pair with the other's"
    return "it multiplies two activations whose units are not on the same batch axis"


@handler("softmax")
def _softmax(b: Builder, node: onnx.NodeProto) -> None:
    """Softmax (LogSoftmax, Hardmax, LpNormalization) along other axes than the units'.

    Attention's Softmax runs over the keys, within each head. What a unit holds afterwards is
    never known here (a constant row becomes 1/n), so its constants are NaN.
    """
    xs = b.space(node.input[0])
    default = -1 if node.op_type == "LpNormalization" else None
    axis = attr(node, "axis", default)
    if axis is None:
        axis = -1 if b.opset >= 13 else 1
    axis %= xs.rank
    one_axis = node.op_type == "LpNormalization" or b.opset >= 13
    mixed = (axis,) if one_axis else tuple(range(axis, xs.rank))
    if xs.inner or xs.axis in mixed:
        b.block(xs, why="it mixes along the unit axis")
        return
    out = node.output[0]
    b.alias(out, xs)
    b.rules.append(lambda consts, arrays, pending: consts.__setitem__(out, np.full(xs.size, NAN)))
