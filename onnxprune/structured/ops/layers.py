"""Layers: Conv, ConvTranspose, Gemm and MatMul make spaces; their inputs are consumed units.

A group-1 Conv, a Gemm or a MatMul with an initializer weight produces a new space (one unit per
filter) and consumes the space it reads; a depthwise Conv ties each output channel to the input
channel it filters, so both go together and its ``group`` is rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.graph.conv_geometry import resolve_pads
from onnxprune.structured.groups import Builder, Consumer, Folded, Slice, Space, Window
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops import heads
from onnxprune.structured.ops._common import NAN, attr, bias_ok, input_at, padded, rows_zero


@handler("conv", layer=True)
def _conv(b: Builder, node: onnx.NodeProto) -> None:
    x, wname, bias = node.input[0], node.input[1], input_at(node, 2)
    xs, w = b.space(x), b.const(wname)
    if x in b.fills and node.op_type == "Conv" and w is not None and b.owned(wname):
        _over_fill(b, node, w, b.fills[x])
        return
    problem = b.why_not_owned(wname)
    if problem or w.ndim < 3 or b.const(x) is not None:
        b.block(xs, why=problem)
        return
    group = attr(node, "group", 1)
    transpose = node.op_type == "ConvTranspose"
    in_axis, out_axis = (0, 1) if transpose else (1, 0)
    n_out = w.shape[out_axis] * (group if transpose else 1)
    out_ok = bias_ok(b, bias, n_out)
    if group == 1:
        if xs is not None and xs.axis == 1 and xs.size == w.shape[in_axis]:
            window = _window(b, node, w.shape[2:]) if padded(node) else None
            foldable = not transpose and (not padded(node) or window is not None)
            foldable = foldable and (not bias or out_ok)
            b.consumers.append(
                Consumer(node, wname, in_axis, out_axis, x, bias or None, 1.0, foldable, window)
            )
        else:
            b.block(xs)
        if out_ok:
            _producer(b, node, wname, out_axis, bias, w.ndim, n_out)
        return
    per_channel = xs is not None and xs.axis == 1 and xs.size == group
    if transpose and per_channel and w.shape[:2] == (group, 1) and out_ok:
        _depthwise(b, node, xs, 1)
        return
    split = not transpose and xs is not None and xs.axis == 1 and xs.size == group * w.shape[1]
    if not (split and n_out % group == 0 and out_ok):
        why = f"a grouped ConvTranspose (group={group}) that is not depthwise is not followed"
        b.block(xs, why=why if transpose else None)
        return
    if w.shape[1] == 1:
        _depthwise(b, node, xs, n_out // group)
    else:
        _grouped(b, node, xs, w, group)


def _grouped(b: Builder, node: onnx.NodeProto, xs: Space, w: np.ndarray, group: int) -> None:
    """A grouped Conv: each group keeps as many input and output channels as the others.

    The k-th input channel of every group goes together (the weight's input axis indexes a
    channel within its group), and so does the j-th output channel: removing one removes it
    from every group, and ``group`` stays.
    """
    wname, bias = node.input[1], input_at(node, 2)
    per_in, per_out = w.shape[1], w.shape[0] // group
    for g in range(1, group):
        b.tie(xs, np.arange(g * per_in, (g + 1) * per_in), xs, np.arange(per_in))
    b.consumers.append(
        Consumer(node, wname, 1, 0, node.input[0], bias or None, 1.0, False, groups=group)
    )
    out = _producer(b, node, wname, 0, bias, w.ndim, w.shape[0])
    for g in range(1, group):
        b.tie(out, np.arange(g * per_out, (g + 1) * per_out), out, np.arange(per_out))


def _over_fill(b: Builder, node: onnx.NodeProto, w: np.ndarray, value: float) -> None:
    """A Conv over a constant fill (a folded constant compaction wrote): a map, no filters.

    Its output units are sliced with whatever they are added to; what each holds is its kernel
    sum times the fill, where no tap lands in padding.
    """
    wname, bias, out = node.input[1], input_at(node, 2), node.output[0]
    n = w.shape[0]
    window = _window(b, node, w.shape[2:])
    if attr(node, "group", 1) != 1 or not bias_ok(b, bias, n) or (padded(node) and not window):
        return
    b.new(out, 1, w.ndim, n)
    b.slices.append(Slice(wname, 0, out))
    if bias:
        b.slices.append(Slice(bias, 0, out))

    def rule(consts, arrays, pending):
        kernel = arrays[wname].astype(np.float64).sum(axis=1) * value
        base = arrays[bias].astype(np.float64) if bias else np.zeros(n)
        if window is None:
            consts[out] = base + kernel.reshape(n, -1).sum(axis=1)
        else:
            consts[out] = base + Folded(np.zeros(n), kernel, window).per_unit()

    b.rules.append(rule)


@handler("constant_of_shape", layer=True)
def _fill(b: Builder, node: onnx.NodeProto) -> None:
    value = attr(node, "value", None)
    fill = 0.0 if value is None else numpy_helper.to_array(value).reshape(-1)[0]
    if b.const(node.input[0]) is not None and np.issubdtype(np.asarray(fill).dtype, np.floating):
        b.fills[node.output[0]] = float(fill)


def _window(b: Builder, node: onnx.NodeProto, kernel: tuple[int, ...]) -> Window | None:
    """Where the taps of a padded Conv fall, from static input and output shapes (or None)."""
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    nd = len(kernel)
    if shape_in is None or shape_out is None or len(shape_in) != nd + 2:
        return None
    sizes_in, sizes_out = tuple(shape_in[2:]), tuple(shape_out[2:])
    if None in sizes_in or None in sizes_out:
        return None
    strides = tuple(attr(node, "strides", [1] * nd))
    dilations = tuple(attr(node, "dilations", [1] * nd))
    auto = attr(node, "auto_pad", b"NOTSET")
    pads = resolve_pads(auto, attr(node, "pads"), sizes_in, kernel, strides, dilations)
    return Window(pads[:nd], strides, dilations, sizes_in, sizes_out)


def _producer(
    b: Builder, node: onnx.NodeProto, wname: str, axis: int, bias: str, rank: int, n: int
) -> Space:
    """The output space of a layer whose filters are ``wname`` along ``axis``."""
    out = node.output[0]
    space = b.new(out, 1 if node.op_type.startswith("Conv") else rank - 1, rank, n)
    b.slices.append(Slice(wname, axis, out))
    b.filters.append(Slice(wname, axis, out))
    if bias:
        b.slices.append(Slice(bias, b.const(bias).ndim - 1, out))
    beta = attr(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0

    def rule(consts, arrays, pending):
        base = np.zeros(n)
        if bias:
            base = base + arrays[bias].astype(np.float64).reshape(-1)
        if out in pending:  # a bias to be: a Gemm scales it by beta too
            base = base + pending[out].per_unit()
        consts[out] = np.where(rows_zero(arrays[wname], axis), beta * base, NAN)

    b.rules.append(rule)
    return space


def _depthwise(b: Builder, node: onnx.NodeProto, xs: Space, multiplier: int) -> None:
    """Each output channel filters one input channel: they go together.

    A depthwise ConvTranspose (weight ``[C, 1, *k]``, ``group`` = C: learned upsampling) too;
    there a constant input channel gives no constant output (near the borders, and between
    strides, fewer taps land): only a zero input or kernel leaves it known, its bias.
    """
    wname, bias, out = node.input[1], input_at(node, 2), node.output[0]
    n = xs.size * multiplier
    space = b.new(out, 1, xs.rank, n)
    b.tie(space, np.arange(n), xs, np.arange(n) // multiplier)
    b.slices.append(Slice(wname, 0, out))
    b.filters.append(Slice(wname, 0, out))
    if bias:
        b.slices.append(Slice(bias, 0, out))
    pads = padded(node)
    transposed = node.op_type == "ConvTranspose"

    def rule(consts, arrays, pending):
        w = arrays[wname].astype(np.float64)
        c = np.repeat(consts[xs.tensor], multiplier)
        base = arrays[bias].astype(np.float64) if bias else np.zeros(n)
        if transposed:
            through = np.where(c == 0, base, NAN)
        else:
            through = np.where(pads & (c != 0), NAN, c * w.reshape(n, -1).sum(axis=1) + base)
        consts[out] = np.where(rows_zero(w, 0), base, through)

    def edit(kept, arrays, fresh):
        for a in node.attribute:
            if a.name == "group":
                a.i = int(kept(xs.tensor).sum())

    b.rules.append(rule)
    b.edits.append(edit)


@handler("gemm", layer=True)
def _gemm(b: Builder, node: onnx.NodeProto) -> None:
    x, wname, bias = node.input[0], node.input[1], input_at(node, 2)
    xs, w = b.space(x), b.const(wname)
    problem = b.why_not_owned(wname)
    ok = not problem and w.ndim == 2 and not attr(node, "transA", 0)
    if not ok or b.const(x) is not None:
        b.block(xs, why=problem)
        return
    in_axis = 1 if attr(node, "transB", 0) else 0
    out_axis = 1 - in_axis
    n_out = w.shape[out_axis]
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    out_ok = bias_ok(b, bias, n_out) and (
        not bias or b.const(bias).ndim == 1 or b.const(bias).shape[0] == 1
    )
    if xs is not None and xs.rank == 2 and xs.axis == 1 and xs.size == w.shape[in_axis]:
        foldable = beta != 0 and (not bias or out_ok)
        scale = alpha / beta if beta else 0.0
        b.consumers.append(
            Consumer(node, wname, in_axis, out_axis, x, bias or None, scale, foldable)
        )
    else:
        b.block(xs)
    if out_ok:
        _producer(b, node, wname, out_axis, bias, 2, n_out)


@handler("matmul", layer=True)
def _matmul(b: Builder, node: onnx.NodeProto) -> None:
    x, wname = node.input
    xs, w, rank = b.space(x), b.const(wname), b.rank(node.output[0])
    two = w is None and b.const(x) is None  # a product of two activations (attention)
    if two and heads.batched_matmul(b, node):
        return
    # A weight tied to other readers (shared) is no activation, though it has no constant here.
    problem = heads.unpaired(b, node) if two and wname not in b.shared else b.why_not_owned(wname)
    if not problem and w.ndim != 2:  # a batched product with a folded constant (DeBERTa's)
        problem = f"its constant operand {wname!r} has {w.ndim} axes, not a weight's 2"
    if problem or b.const(x) is not None or not rank:
        for name in node.input:
            b.block(b.space(name), why=problem)
        return
    if xs is not None and xs.axis == xs.rank - 1 and xs.size == w.shape[0]:
        b.consumers.append(Consumer(node, wname, 0, 1, x, None, 1.0, True))
    else:
        b.block(xs)
    _producer(b, node, wname, 1, "", rank, w.shape[1])
