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

``RotaryEmbedding`` rotates channels in pairs within a head: its heads go whole too.

A head whose value columns are all zero outputs its value bias (a softmax row sums to 1), which
compaction folds into the next bias. Past key/value states (graph inputs sized by the heads) or
a present state that is read block the heads.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    v = int(sizes[0]) if isinstance(sizes, list) and sizes else 0
    equal = sizes == [v] * 3 and 3 * v == w.shape[1] and heads > 0 and v > 0 and v % heads == 0
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


@dataclass(frozen=True)
class _Inputs:
    """Where Q, K and V are, and how many channels each has.

    Each is a space and the offset of its channels there: packed GQA holds them side by side
    in one.
    """

    spaces: tuple[Space, Space, Space]
    offsets: tuple[int, int, int]
    sizes: tuple[int, int, int]

    @staticmethod
    def of(b: Builder, node: onnx.NodeProto, heads: int, kv: int) -> _Inputs | str:
        """Q, K and V of ``node``, or why they cannot be followed."""
        names = [input_at(node, i) for i in range(3)]
        spaces = tuple(b.space(name) for name in names if name)
        if any(s is None or s.rank != 3 or s.axis != 2 for s in spaces) or not spaces:
            return "its Q, K, V are not all [B, T, C] tensors with units"
        if heads <= 0 or kv <= 0 or heads % kv:
            return f"{heads} heads and {kv} K/V heads"
        if len(spaces) == 3:
            return _Inputs(spaces, (0, 0, 0), tuple(s.size for s in spaces))
        if node.op_type != "GroupQueryAttention" or names[1] or names[2]:
            return "its Q, K, V are not all [B, T, C] tensors with units"
        (packed,) = spaces
        width = packed.size // (heads + 2 * kv)
        q, k = heads * width, kv * width
        return _Inputs((packed,) * 3, (0, q, q + k), (q, k, k))


@handler("split_attention")
def _split(b: Builder, node: onnx.NodeProto) -> None:
    """``MultiHeadAttention`` and ``GroupQueryAttention`` over Q, K and V ``[B, T, C]``.

    Packed (``GroupQueryAttention`` without inputs 1 and 2), Q, K and V sit side by side in
    input 0, the columns of one MatMul: a K/V group takes its entries from each part.
    """
    spaces = [b.space(name) for name in node.input]
    heads = int(attr(node, "num_heads", 0))
    grouped = node.op_type == "GroupQueryAttention"
    kv = int(attr(node, "kv_num_heads", 0)) if grouped else heads
    bias = "" if grouped else input_at(node, 3)
    qkv = _Inputs.of(b, node, heads, kv)
    why = _stateful(b, node) or (
        qkv if isinstance(qkv, str) else _unfit(b, node, qkv, heads, kv, bias)
    )
    if why:
        for s in spaces:
            b.block(s, why=why)
        return
    for s in spaces[3:]:
        b.block(s, why="it reads these units as a mask or a bias")
    out = node.output[0]
    n = qkv.sizes[0]
    space, width = _heads(b, out, n, heads)
    units = np.arange(n)
    shared = units // width // (heads // kv) * width + units % width  # its K/V channel
    reads = (units, shared, shared)
    for s, offset, index in zip(qkv.spaces, qkv.offsets, reads, strict=True):
        b.tie(space, units, s, offset + index)
    if bias:
        b.slices.append(Slice(bias, 0, out, tile=3))
    values, offset = qkv.spaces[2], qkv.offsets[2]

    def edit(kept, arrays, fresh):
        n_kept = int(kept(out).sum())
        _set(node, "num_heads", n_kept // width)
        if grouped:
            keys = kept(qkv.spaces[1].tensor)
            if qkv.offsets[1]:  # packed: Q, K, V kept side by side
                _set(node, "kv_num_heads", (int(keys.sum()) - n_kept) // (2 * width))
            else:
                _set(node, "kv_num_heads", int(keys.sum()) // width)

    def rule(consts, arrays, pending):  # values the same everywhere: the output holds them
        base = arrays[bias][2 * n :].astype(np.float64) if bias else 0.0
        consts[out] = consts[values.tensor][offset + shared] + base

    b.edits.append(edit)
    b.rules.append(rule)


def _unfit(
    b: Builder, node: onnx.NodeProto, qkv: _Inputs, heads: int, kv: int, bias: str
) -> str | None:
    """Why Q, K, V cannot be followed here (uneven heads, sizes that do not fit...), or None."""
    q, k, v = qkv.sizes
    total = qkv.spaces[0].size if qkv.offsets[1] else q
    if q % heads or q == 0 or (qkv.offsets[1] and total != q + 2 * k):
        return f"{total} channels in {heads} heads and {kv} K/V heads"
    if k != v or k * heads != q * kv or b.rank(node.output[0]) != 3:
        return f"Q, K, V sizes {q}, {k}, {v}"
    if not bias_ok(b, bias, 3 * q):
        return f"its bias {bias!r} is not {3 * q} entries it alone reads"
    return None


@handler("rotary")
def _rotary(b: Builder, node: onnx.NodeProto) -> None:
    """``RotaryEmbedding``: channels rotated in pairs within a head, so a head goes whole.

    ``num_heads`` (when set) is rewritten; the cosine and sine caches are per rotated pair of a
    head, the same for every head, and stay.
    """
    spaces = [b.space(name) for name in node.input]
    xs, heads = spaces[0], int(attr(node, "num_heads", 0))
    cos = b.const(input_at(node, 2))
    width = 0
    if xs is not None and heads > 0:
        width = xs.size // heads
    elif cos is not None and cos.ndim == 2:
        width = 2 * cos.shape[1]
    fits = xs is not None and xs.rank == 3 and xs.axis == 2 and width and xs.size % width == 0
    if not fits or used_extra(b, node):
        for s in spaces:
            b.block(s)
        return
    for s in spaces[1:]:
        b.block(s, why="it reads these units as positions or angles")
    out = node.output[0]
    b.alias(out, xs)
    units = np.arange(xs.size)
    b.tie(xs, units, xs, units // width * width)

    def edit(kept, arrays, fresh):
        if heads:
            _set(node, "num_heads", int(kept(out).sum()) // width)

    def rule(consts, arrays, pending):  # a head of zeros stays zero; anything else rotates
        c = consts[xs.tensor].reshape(-1, width)
        consts[out] = np.repeat(np.where((c == 0).all(axis=1), 0.0, NAN), width)

    b.edits.append(edit)
    b.rules.append(rule)
