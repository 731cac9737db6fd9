"""Pooling: sliding windows over the spatial axes, and global pooling over all of them."""

from __future__ import annotations

from onnxprune.graph.conv_geometry import resolve_pads
from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Dense, Reduce, Window


@op_rule("MaxPool", "AveragePool", "LpPool")
def pool(node: NodeView) -> Window | Dense:
    """A window of ``kernel_shape`` over axes 2.., with ONNX strides, dilations and pads."""
    kernel = tuple(node.attr("kernel_shape"))
    n = len(kernel)
    strides = tuple(node.attr("strides", None) or (1,) * n)
    dilations = tuple(node.attr("dilations", None) or (1,) * n)
    pads = explicit_pads(node, kernel, strides, dilations)
    if pads is None:
        return Dense("auto_pad needs static spatial shapes")
    return Window(tuple(range(2, 2 + n)), kernel, strides, dilations, pads)


@op_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(node: NodeView) -> Reduce | Dense:
    """Every spatial position of a channel feeds that channel's single output."""
    shape = node.in_shapes[0]
    if shape is None:
        return Dense("global pooling of an input of unknown rank")
    return Reduce(tuple(range(2, len(shape))), keepdims=True)


def explicit_pads(
    node: NodeView, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]
) -> tuple[int, ...] | None:
    """ONNX ``pads`` (begins then ends) with ``auto_pad`` resolved; ``None`` if that needs shapes.

    Shared by pooling and convolution, whose padding rules are the same.
    """
    shape = node.static_in(0)
    return resolve_pads(
        node.attr("auto_pad", b"NOTSET"),
        node.attr("pads", None),
        None if shape is None else shape[2:],
        kernel,
        strides,
        dilations,
    )
