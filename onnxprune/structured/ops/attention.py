"""ONNX Runtime's fused attention ops (``com.microsoft``): a head is a unit of removal.

``Attention`` reads its input through one weight ``[C, 3 * V]`` (Q, K and V columns side by
side, ``qkv_hidden_sizes`` equal) and a bias ``[3 * V]``; ``MultiHeadAttention`` reads Q, K and V
computed before it (their MatMuls are the filters) and one bias ``[3 * V]``;
``GroupQueryAttention`` reads ``num_heads`` query heads and ``kv_num_heads`` K/V heads. The
output ``[B, T, V]`` holds each head's channels: its units, tied within a head, and for grouped
queries within a K/V group (a K/V head goes with all of its query heads, so the ratio stays
valid). A head's Q, K and V columns (or the producers of those inputs), its bias entries and its
rows of the output projection (the next layer, a consumer) are one dependency group;
``num_heads``, ``kv_num_heads`` and ``qkv_hidden_sizes`` are rewritten.

A head whose value columns are all zero outputs its value bias (a softmax row sums to 1), which
compaction folds into the next bias. Past key/value states (graph inputs sized by the heads) or
a present state that is read block the heads.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Consumer, Slice, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, attr, bias_ok, input_at, rows_zero, used_extra

PAST = {"Attention": (4,), "MultiHeadAttention": (6, 7), "GroupQueryAttention": (3, 4)}
"""Per op, the inputs holding past key/value states."""


def _stateful(b: Builder, node: onnx.NodeProto) -> str | None:
    """Why the heads cannot go: a past state is given, or a present state is read."""
    if any(input_at(node, i) for i in PAST[node.op_type]):
        return "past key/value states are sized by the heads"
    if used_extra(b, node):
        return "its present key/value states are read"
    return None


def _heads(b: Builder, out: str, n: int, heads: int) -> tuple[Space, int]:
    """The output's space: ``n`` channels, tied within each of ``heads`` heads."""
    space = b.new(out, 2, 3, n)
    width = n // heads
    b.tie(space, np.arange(n), space, np.arange(n) // width * width)
    return space, width


def _set(node: onnx.NodeProto, name: str, value) -> None:
    for a in node.attribute:
        if a.name == name and a.type == onnx.AttributeProto.INT:
            a.i = int(value)
        elif a.name == name:
            del a.ints[:]
            a.ints.extend(int(v) for v in value)


@handler("fused_attention", layer=True)
def _fused(b: Builder, node: onnx.NodeProto) -> None:
    """``Attention``: its input is read through the fused weight; its heads are units."""
    x, wname, bias, out = node.input[0], node.input[1], input_at(node, 2), node.output[0]
    xs, w, heads = b.space(x), b.const(wname), int(attr(node, "num_heads", 0))
    problem = b.why_not_owned(wname)
    if problem or w.ndim != 2 or b.const(x) is not None:
        b.block(xs, why=problem)
        return
    if xs is not None and xs.axis == xs.rank - 1 and xs.size == w.shape[0]:
        foldable = bool(bias) and bias_ok(b, bias, w.shape[1])
        b.consumers.append(Consumer(node, wname, 0, 1, x, bias or None, 1.0, foldable))
    else:
        b.block(xs)
    sizes = attr(node, "qkv_hidden_sizes", None) or [w.shape[1] // 3] * 3
    v = int(sizes[0])
    equal = len(set(sizes)) == 1 and 3 * v == w.shape[1] and heads > 0 and v % heads == 0
    if not equal or not bias_ok(b, bias, 3 * v) or b.rank(out) != 3 or _stateful(b, node):
        return
    _, width = _heads(b, out, v, heads)
    b.slices.append(Slice(wname, 1, out, tile=3))
    b.filters.append(Slice(wname, 1, out, tile=3))
    if bias:
        b.slices.append(Slice(bias, 0, out, tile=3))

    def edit(kept, arrays, fresh):
        n = int(kept(out).sum())
        _set(node, "num_heads", n // width)
        _set(node, "qkv_hidden_sizes", [n] * 3)

    def rule(consts, arrays, pending):  # zero value columns: the head outputs its value bias
        base = arrays[bias][2 * v :].astype(np.float64) if bias else np.zeros(v)
        consts[out] = np.where(rows_zero(arrays[wname][:, 2 * v :], 1), base, NAN)

    b.edits.append(edit)
    b.rules.append(rule)


@handler("split_attention")
def _split(b: Builder, node: onnx.NodeProto) -> None:
    """``MultiHeadAttention`` and ``GroupQueryAttention`` over Q, K and V ``[B, T, C]``."""
    spaces = [b.space(name) for name in node.input]
    q, k, v = (spaces + [None] * 3)[:3]
    heads = int(attr(node, "num_heads", 0))
    grouped = node.op_type == "GroupQueryAttention"
    kv = int(attr(node, "kv_num_heads", 0)) if grouped else heads
    bias = "" if grouped else input_at(node, 3)
    why = _stateful(b, node) or _unfit(b, node, (q, k, v), heads, kv, bias)
    if why:
        for s in spaces:
            b.block(s, why=why)
        return
    for s in spaces[3:]:
        b.block(s, why="it reads these units as a mask or a bias")
    out = node.output[0]
    space, width = _heads(b, out, q.size, heads)
    rep = heads // kv
    units = np.arange(q.size)
    shared = units // width // rep * width + units % width  # the K/V channel each one reads
    b.tie(space, units, q, units)
    b.tie(space, units, k, shared)
    b.tie(space, units, v, shared)
    if bias:
        b.slices.append(Slice(bias, 0, out, tile=3))

    def edit(kept, arrays, fresh):
        _set(node, "num_heads", int(kept(out).sum()) // width)
        if grouped:
            _set(node, "kv_num_heads", int(kept(k.tensor).sum()) // width)

    def rule(consts, arrays, pending):  # values the same everywhere: the output holds them
        base = arrays[bias][2 * q.size :].astype(np.float64) if bias else 0.0
        consts[out] = consts[v.tensor][shared] + (base if bias else 0.0)

    b.edits.append(edit)
    b.rules.append(rule)


def _unfit(
    b: Builder, node: onnx.NodeProto, qkv: tuple, heads: int, kv: int, bias: str
) -> str | None:
    """Why Q, K, V cannot be followed here (packed, batch-major, uneven heads...), or None."""
    q, k, v = qkv
    if any(s is None or s.rank != 3 or s.axis != 2 for s in qkv):
        return "its Q, K, V are not all [B, T, C] tensors with units"
    if heads <= 0 or kv <= 0 or heads % kv or q.size % heads:
        return f"{q.size} channels in {heads} heads and {kv} K/V heads"
    if k.size != v.size or k.size * heads != q.size * kv or b.rank(node.output[0]) != 3:
        return f"Q, K, V sizes {q.size}, {k.size}, {v.size}"
    if not bias_ok(b, bias, 3 * q.size):
        return f"its bias {bias!r} is not {3 * q.size} entries it alone reads"
    return None
