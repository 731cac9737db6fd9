"""Prunable layers: Conv, ConvTranspose, Gemm and MatMul with a constant weight.

A layer whose weight is not a constant we can follow (two activations multiplied, a weight
computed at run time) is not prunable and mixes densely.
"""

from __future__ import annotations

from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.rules.pooling import explicit_pads
from onnxprune.graph.transfers import Contract, Dense


@op_rule("Conv", "ConvTranspose")
def conv(node: NodeView) -> Contract | Dense:
    """A convolution over axes 2..; the weight is input 1."""
    source = node.constants.source(node.node.input[1])
    w_shape = node.in_shapes[1] or node.constants.shape(node.node.input[1])
    if source is None or w_shape is None or 0 not in node.activations:
        return Dense(f"{node.op_type} with a weight computed at run time")
    if 2 in node.activations:
        return Dense(f"{node.op_type} with a bias computed at run time")
    kernel = tuple(node.attr("kernel_shape", None) or w_shape[2:])
    n = len(kernel)
    strides = tuple(node.attr("strides", None) or (1,) * n)
    dilations = tuple(node.attr("dilations", None) or (1,) * n)
    if node.op_type == "ConvTranspose":
        pads = _transpose_pads(node, kernel, strides, dilations)
    else:
        pads = explicit_pads(node, kernel, strides, dilations)
    if pads is None:
        return Dense("auto_pad needs static spatial shapes")
    kind = "conv" if node.op_type == "Conv" else "conv_transpose"
    return Contract(
        kind,
        activation=0,
        weight=1,
        source=source,
        group=int(node.attr("group", 1)),
        strides=strides,
        dilations=dilations,
        pads=pads,
    )


def _transpose_pads(
    node: NodeView, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]
) -> tuple[int, ...] | None:
    """Crop at the begin/end of each spatial axis of a ConvTranspose output (ONNX semantics).

    Input position ``i`` and tap ``k`` write output position ``i * stride + k * dilation - begin``;
    positions outside the inferred output shape are cropped.
    """
    n = len(kernel)
    pads = node.attr("pads", None)
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", "VALID") and node.attr("output_shape", None) is None:
        return tuple(pads) if pads and auto_pad == "NOTSET" else (0,) * (2 * n)
    inp, out = node.static_in(0), node.static_out()
    if inp is None or out is None or len(out) != len(inp):
        return None
    begins, ends = [], []
    extra = node.attr("output_padding", None) or (0,) * n
    for i, (size, k, s, d) in enumerate(zip(inp[2:], kernel, strides, dilations, strict=True)):
        full = s * (size - 1) + extra[i] + (k - 1) * d + 1
        total = max(0, full - out[2 + i])
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return (*begins, *ends)


@op_rule("Gemm")
def gemm(node: NodeView) -> Contract | Dense:
    """``alpha * A' @ B' + beta * C`` with ``A' = A.T`` if transA, ``B' = B.T`` if transB."""
    trans_a, trans_b = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    return _matmul(node, trans_a=trans_a, trans_b=trans_b)


@op_rule("MatMul")
def matmul(node: NodeView) -> Contract | Dense:
    """``A @ B`` where one side is a constant 2-D weight."""
    return _matmul(node, trans_a=False, trans_b=False)


def _matmul(node: NodeView, *, trans_a: bool, trans_b: bool) -> Contract | Dense:
    if 2 in node.activations:
        return Dense(f"{node.op_type} with a bias computed at run time")
    acts = set(node.activations) & {0, 1}
    if acts == {0, 1}:
        return Dense(f"{node.op_type} of two activations")
    weight = 1 if 0 in acts else 0
    source = node.constants.source(node.node.input[weight])
    w_shape = node.in_shapes[weight] or node.constants.shape(node.node.input[weight])
    if source is None or w_shape is None or len(w_shape) != 2:
        return Dense(f"{node.op_type} with a weight that is not a constant 2-D tensor")
    # Axes count from the end, so they hold whatever the activation's rank.
    if weight == 1:
        # y[..., n] = sum_k x[..., k] W'[k, n]; W' = W.T when transB.
        return Contract("matmul", 0, 1, source, -2 if trans_a else -1, -1, w_transposed=trans_b)
    # y[..., m, n] = sum_k W'[m, k] x[..., k, n]; W' = W.T when transA; stored as [K, M] iff transA.
    return Contract("matmul", 1, 0, source, -1 if trans_b else -2, -2, w_transposed=not trans_a)
