"""Checks of the prunable layers (Conv, ConvTranspose, Gemm, MatMul), pools and broadcasting."""

from __future__ import annotations

from onnx import TensorProto

from onnxprune.op_checks._base import (
    BROADCASTING,
    NodeCheck,
    Shape,
    broadcast,
    broadcasts,
    clash,
    differ,
    op_check,
    show,
)

_NOT_NUMBERS = frozenset(
    {TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.BOOL}
    | {TensorProto.COMPLEX64, TensorProto.COMPLEX128}
)


@op_check("Conv", "ConvTranspose")
def conv(c: NodeCheck) -> None:
    """Weight ``[out, in / group, *kernel]`` (ConvTranspose ``[in, out / group, *kernel]``)."""
    _numbers(c, 1)
    group = int(c.attr("group", 1))
    if group < 1:
        raise c.fail(f"group={group} must be at least 1")
    w = c.shape(1)
    if w is not None:
        if len(w) < 3 or any(d is not None and d < 1 for d in w):
            layout = "out, in" if c.node.op_type == "Conv" else "in, out"
            raise c.fail(
                f"weight of shape {show(w)} is not [{layout} / group, *kernel] of dims >= 1"
            )
        if w[0] is not None and w[0] % group:
            raise c.fail(f"weight of shape {list(w)}: {w[0]} does not divide into group={group}")
        kernel = c.attr("kernel_shape")
        if kernel is not None and any(differ(k, d) for k, d in zip(kernel, w[2:], strict=False)):
            raise c.fail(f"kernel_shape={list(kernel)} for a weight of shape {list(w)}")
    n = len(w) - 2 if w is not None else None
    _geometry(c, n)
    if w is None:
        return
    conv = c.node.op_type == "Conv"
    channels = w[1] * group if conv and w[1] is not None else w[0]
    units = w[0] if conv or w[1] is None else w[1] * group
    for side, shape, size in (("input", c.shape(0), channels), ("output", c.out_shape(), units)):
        if shape is not None and (len(shape) != len(w) or differ(shape[1], size)):
            raise c.fail(
                f"{side} of shape {show(shape)} for a weight of shape {show(w)}, group={group}"
            )


AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@op_check("MaxPool", "AveragePool", "LpPool")
def pool(c: NodeCheck) -> None:
    """A kernel of sizes >= 1, and the geometry of ``_geometry`` for its rank."""
    kernel = c.attr("kernel_shape")
    if kernel is None or not kernel or min(kernel) < 1:
        raise c.fail(f"kernel_shape={kernel} must list sizes >= 1")
    _geometry(c, len(kernel))


def _geometry(c: NodeCheck, n: int | None) -> None:
    """Strides and dilations >= 1, pads >= 0, one per spatial axis (pads two); known auto_pad."""
    auto_pad = c.attr("auto_pad", b"NOTSET")
    if auto_pad not in AUTO_PADS and auto_pad not in (a.encode() for a in AUTO_PADS):
        raise c.fail(f"auto_pad={auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    for name, per_axis, least in (
        ("strides", 1, 1),
        ("dilations", 1, 1),
        ("pads", 2, 0),
        ("output_padding", 1, 0),
    ):
        values = c.attr(name)
        if values is None:
            continue
        if (n is not None and len(values) != per_axis * n) or min(values, default=least) < least:
            raise c.fail(f"{name}={list(values)} for {n} spatial axes (each >= {least})")


@op_check("Gemm")
def gemm(c: NodeCheck) -> None:
    """``A`` and ``B`` are matrices whose inner dims agree after ``transA``/``transB``."""
    _numbers(c, 0)
    _numbers(c, 1)
    a, b = c.shape(0), c.shape(1)
    for side, shape in (("A", a), ("B", b)):
        if shape is not None and len(shape) != 2:
            raise c.fail(f"{side} of shape {show(shape)} is not a matrix")
    y = c.out_shape()
    if y is not None and len(y) != 2:
        raise c.fail(f"output of shape {show(y)} is not a matrix")
    if a is None or b is None:
        return
    (m, k_a), (k_b, n) = _oriented(a, c.attr("transA", 0)), _oriented(b, c.attr("transB", 0))
    if differ(k_a, k_b) or (y is not None and (differ(y[0], m) or differ(y[1], n))):
        raise c.fail(f"A of shape {show(a)} and B of shape {show(b)} make no {show(y)}")


def _oriented(shape: Shape, transposed: int) -> Shape:
    return tuple(reversed(shape)) if transposed else shape


@op_check("MatMul")
def matmul(c: NodeCheck) -> None:
    """Operands of rank >= 1 whose inner dims agree."""
    _numbers(c, 0)
    _numbers(c, 1)
    a, b = c.shape(0), c.shape(1)
    if any(s is not None and not s for s in (a, b)):
        raise c.fail(f"operands of shapes {show(a)} and {show(b)}: scalars do not multiply")
    if a is None or b is None:
        return
    y, product = c.out_shape(), _matmul_shape(a, b)
    if product is None or (y is not None and clash(y, product)):
        raise c.fail(f"operands of shapes {show(a)} and {show(b)} make no {show(y)}")


def _matmul_shape(a: Shape, b: Shape) -> Shape | None:
    """The shape of ``a @ b`` (numpy.matmul: vectors lose their axis); ``None`` if they clash."""
    left = (1, *a) if len(a) == 1 else a
    right = (*b, 1) if len(b) == 1 else b
    batch = broadcast([left[:-2], right[:-2]])
    if batch is None or differ(left[-1], right[-2]):
        return None
    return (*batch, *left[-2:-1][len(a) == 1 :], *right[-1:][len(b) == 1 :])


@op_check(*BROADCASTING)
def broadcasting(c: NodeCheck) -> None:
    """Inputs that broadcast together (numpy's rules) to the output's shape, where known."""
    broadcasts(c, [c.shape(i) for i in range(len(c.node.input))])


def _numbers(c: NodeCheck, index: int) -> None:
    """A layer's stored weight holds numbers (not strings, booleans or complex values)."""
    data_type = c.stored_type(index)
    if data_type in _NOT_NUMBERS:
        kind = TensorProto.DataType.Name(data_type)
        raise c.fail(f"weight {c.input(index)!r} is {kind}; a layer's weights are numbers")
