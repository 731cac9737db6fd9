"""Load-time checks of the nodes whose inputs and attributes onnxprune reads.

ONNX's checker validates node arity and attribute types, not values: a ``Conv`` with
``group=0``, a ``Transpose`` whose ``perm`` repeats an axis or a ``Reshape`` to the wrong
number of elements pass it and fail in ONNX Runtime, or in NumPy deep inside onnxprune. Each
check here is a short function registered for its op types with ``@op_check``; it reads the
node's attributes, the shapes of its constant inputs (``ConstantResolver``, never materializing
a weight) and the shapes the model declares for its activations, and raises one line naming the
node. Unknown shapes are not an error: what cannot be checked here is left to the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from onnxprune.errors import InvalidModelError, LimitExceededError
from onnxprune.weights import ConstantResolver, attr

SMALL = 1024
"""Largest helper tensor (a shape, axes) whose value a check reads."""
MAX_RANK = 32
"""Largest rank a computed constant may have (NumPy allows 64)."""

Shape = tuple[int | None, ...]
Check = Callable[["NodeCheck"], None]
CHECKS: dict[str, Check] = {}
"""The check of each op type that has one."""

_NOT_NUMBERS = frozenset(
    {TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.BOOL}
    | {TensorProto.COMPLEX64, TensorProto.COMPLEX128}
)
_VALUE_ATTRS = frozenset(
    {"value", "sparse_value", "value_float", "value_floats", "value_int", "value_ints"}
    | {"value_string", "value_strings"}
)


def op_check(*op_types: str) -> Callable[[Check], Check]:
    """Register ``fn`` as the load-time check of ``op_types`` (default ONNX domain)."""

    def register(fn: Check) -> Check:
        for op in op_types:
            if op in CHECKS:
                raise ValueError(f"op type {op!r} has a check already")
            CHECKS[op] = fn
        return fn

    return register


@dataclass(frozen=True)
class NodeCheck:
    """One node and what its check may read.

    Attributes:
        node: the node.
        name: its name, or ``<op_type>_<index>`` when it has none.
        constants: resolves constant inputs (shapes without reading weights).
        declared: the shapes known for its values, declared or inferred (``None``: unknown).
        initializers: the graph's initializers by name.
        limit: largest tensor in bytes a node may compute.
    """

    node: onnx.NodeProto
    name: str
    constants: ConstantResolver
    declared: Mapping[str, Shape]
    initializers: Mapping[str, onnx.TensorProto]
    limit: int

    def fail(self, text: str) -> InvalidModelError:
        """The error to raise: one line naming the node."""
        return InvalidModelError(f"{self.node.op_type} node {self.name!r}: {text}")

    def attr(self, name: str, default: Any = None) -> Any:
        """Attribute ``name`` as a Python value, or ``default``."""
        return attr(self.node, name, default)

    def input(self, index: int) -> str:
        """The name of input ``index``; ``""`` when absent."""
        return self.node.input[index] if index < len(self.node.input) else ""

    def const_shape(self, index: int) -> tuple[int, ...] | None:
        """The shape of input ``index`` when it is a constant we follow."""
        name = self.input(index)
        return self.constants.shape(name) if name else None

    def shape(self, index: int) -> Shape | None:
        """The shape of input ``index``: a constant's, else the declared one, else ``None``."""
        name = self.input(index)
        if not name:
            return None
        shape = self.constants.shape(name)
        return self.declared.get(name) if shape is None else shape

    def out_shape(self, index: int = 0) -> Shape | None:
        """The shape known for output ``index``, or ``None``."""
        name = self.node.output[index] if index < len(self.node.output) else ""
        return self.declared.get(name) if name else None

    def ints(self, index: int) -> np.ndarray | None:
        """The value of a small constant input that ONNX types as integers (a shape, axes).

        ``None`` when the input is absent, computed at run time or large.

        Raises:
            InvalidModelError: the input holds something other than integers.
        """
        shape = self.const_shape(index)
        if shape is None or math.prod(shape) > SMALL:
            return None
        value = np.asarray(self.constants.value(self.input(index)))
        if value.dtype.kind not in "iu":
            raise self.fail(f"input {self.input(index)!r} holds {value.dtype}, not integers")
        return value

    def stored_type(self, index: int) -> int | None:
        """The data type of the tensor stored behind constant input ``index``."""
        name = self.input(index)
        source = self.constants.source(name) if name else None
        if source is None or source.kind != "initializer":
            return None
        return self.initializers[source.name].data_type


def check_nodes(graph: onnx.GraphProto, limit: int) -> None:
    """Run the check of every node of ``graph`` that has one, in graph order.

    Producers come before their consumers, so a check may follow a constant chain whose
    nodes were checked already.

    Raises:
        InvalidModelError: the first malformed node, named.
        LimitExceededError: a node would compute a tensor over ``limit`` bytes.
    """
    values = (*graph.input, *graph.value_info, *graph.output)
    declared = {info.name: _declared(info) for info in values}
    _run(graph, {n: s for n, s in declared.items() if s is not None}, limit, CHECKS)


BROADCASTING = ("Add", "Sum", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "PRelu", "Where")
SHAPED = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Expand", "Tile", "Concat", *BROADCASTING)
"""Ops whose checks compare shapes: they run again once shapes are inferred (``check_shapes``)."""


def check_shapes(graph: onnx.GraphProto, shapes: Mapping[str, Shape]) -> None:
    """The checks of ``SHAPED`` ops with inferred shapes (``--input-shape`` and inference's).

    At load only declared shapes are known; the analysis infers the rest, and a layer whose
    input then does not fit its weight, or operands that do not broadcast, are refused before
    any array is built.

    Raises:
        InvalidModelError: the first node whose shapes do not fit, named.
    """
    _run(graph, shapes, 0, {op: CHECKS[op] for op in SHAPED})


def _run(
    graph: onnx.GraphProto, shapes: Mapping[str, Shape], limit: int, checks: Mapping[str, Check]
) -> None:
    constants = ConstantResolver(graph)
    initializers = {t.name: t for t in graph.initializer}
    for index, node in enumerate(graph.node):
        check = checks.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if check is not None:
            name = node.name or f"{node.op_type}_{index}"
            check(NodeCheck(node, name, constants, shapes, initializers, limit))


def _declared(info: onnx.ValueInfoProto) -> Shape | None:
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.dim_value > 0 else None for d in tensor_type.shape.dim)


def _differ(a: int | None, b: int | None) -> bool:
    """Two dims that are both known and differ."""
    return a is not None and b is not None and a != b


# --- constants -----------------------------------------------------------------------------------


@op_check("Constant")
def constant(c: NodeCheck) -> None:
    """Exactly one value attribute; a sparse value's dense form within the limit."""
    names = [a.name for a in c.node.attribute if a.name in _VALUE_ATTRS]
    if len(names) != 1:
        raise c.fail(f"needs exactly one value attribute, has {len(names)} ({names})")
    sparse = c.attr("sparse_value")
    if sparse is not None:
        _sparse(c, sparse)


def _sparse(c: NodeCheck, sparse: onnx.SparseTensorProto) -> None:
    dims = [int(d) for d in sparse.dims]
    if any(d < 0 for d in dims):
        raise c.fail(f"sparse value has a negative dimension: {dims}")
    _within_limit(c, dims, sparse.values.data_type)
    indices = onnx.numpy_helper.to_array(sparse.indices)
    count = math.prod(int(d) for d in sparse.values.dims)
    flat = indices.ndim == 1 and indices.shape == (count,)
    if not flat and indices.shape != (count, len(dims)):
        raise c.fail(f"sparse indices of shape {indices.shape} for {count} values in {dims}")
    bound = np.asarray([math.prod(dims)] if flat else dims, np.int64)
    if indices.size and ((indices < 0).any() or (indices >= bound).any()):
        raise c.fail(f"sparse indices outside the dense shape {dims}")


def _within_limit(c: NodeCheck, dims: list[int], data_type: int) -> None:
    size = math.prod(dims) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    if size > c.limit:
        raise LimitExceededError(
            f"{c.node.op_type} node {c.name!r} makes a tensor of {dims} ({size} bytes), "
            f"over the limit of {c.limit} bytes"
        )


@op_check("ConstantOfShape")
def constant_of_shape(c: NodeCheck) -> None:
    """A 1-D shape of non-negative dims; one fill value; the result within the limit."""
    fill = c.attr("value")
    if fill is not None and math.prod(fill.dims) != 1:
        raise c.fail(f"value must hold one element, has dims {list(fill.dims)}")
    data_type = TensorProto.FLOAT if fill is None else fill.data_type
    if data_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        raise c.fail(f"value of type {TensorProto.DataType.Name(data_type)} cannot fill a tensor")
    shape = c.const_shape(0)
    if shape is None:
        return  # computed at run time: onnxprune never materializes it
    if len(shape) != 1 or shape[0] > MAX_RANK:
        raise c.fail(f"its shape input must be 1-D with at most {MAX_RANK} dims, is {shape}")
    dims = [int(d) for d in c.ints(0)]
    if any(d < 0 for d in dims):
        raise c.fail(f"shape {dims} has a negative dimension")
    _within_limit(c, dims, data_type)


@op_check("Cast")
def cast(c: NodeCheck) -> None:
    """``to`` names an ONNX data type."""
    to = c.attr("to", TensorProto.UNDEFINED)
    if to == TensorProto.UNDEFINED or to not in TensorProto.DataType.values():
        raise c.fail(f"to={to} is not an ONNX data type")


# --- layout between a weight and its layer --------------------------------------------------------


@op_check("Reshape")
def reshape(c: NodeCheck) -> None:
    """A 1-D target with at most one -1 whose size matches the input's when both are known."""
    target = c.ints(1)
    if target is None:
        return
    if target.ndim != 1 or target.size > MAX_RANK:
        raise c.fail(f"target shape must be 1-D with at most {MAX_RANK} dims, is {target.shape}")
    dims = [int(d) for d in target]
    allowzero = bool(c.attr("allowzero", 0))
    if dims.count(-1) > 1 or min(dims, default=0) < -1 or (allowzero and 0 in dims and -1 in dims):
        raise c.fail(f"target shape {dims} is not a valid reshape target")
    before = c.shape(0)
    if before is None or None in before:
        return
    if not allowzero:
        if any(d == 0 and i >= len(before) for i, d in enumerate(dims)):
            raise c.fail(f"target {dims} copies a dim the input {list(before)} does not have")
        dims = [before[i] if d == 0 else d for i, d in enumerate(dims)]
    total, known = math.prod(before), math.prod(d for d in dims if d != -1)
    fits = (known > 0 and total % known == 0) if -1 in dims else known == total
    if not fits:
        raise c.fail(f"cannot reshape {list(before)} ({total} elements) to {dims}")


@op_check("Transpose")
def transpose(c: NodeCheck) -> None:
    """``perm`` is a permutation of the input's axes."""
    perm = c.attr("perm")
    if perm is None:
        return
    perm = [int(p) for p in perm]
    shape = c.shape(0)
    rank = len(perm) if shape is None else len(shape)
    if sorted(perm) != list(range(rank)):
        raise c.fail(f"perm {perm} is not a permutation of the {rank} input axes")


@op_check("Squeeze", "Unsqueeze")
def squeeze(c: NodeCheck) -> None:
    """Axes distinct and inside the rank (of the output for Unsqueeze); squeezed dims are 1."""
    axes = c.attr("axes")
    if axes is None:
        value = c.ints(1) if c.input(1) else None
        axes = None if value is None else value.reshape(-1).tolist()
    shape = c.shape(0)
    if axes is None or shape is None:
        return
    axes = [int(a) for a in axes]
    rank = len(shape) + (len(axes) if c.node.op_type == "Unsqueeze" else 0)
    if (
        rank > 64
        or any(not -rank <= a < rank for a in axes)
        or len({a % rank for a in axes}) < len(axes)
    ):
        raise c.fail(f"axes {axes} are not distinct axes of a rank-{rank} tensor")
    if c.node.op_type == "Squeeze" and any(shape[a] not in (1, None) for a in axes):
        raise c.fail(f"axes {axes} of {list(shape)} are not all of size 1")


@op_check("DequantizeLinear")
def dequantize(c: NodeCheck) -> None:
    """One scale, or one per entry of ``axis``; a zero point shaped like the scale."""
    x, scale = c.const_shape(0), c.const_shape(1)
    if x is None or scale is None:
        return
    zero = c.const_shape(2)
    if zero is not None and zero != scale:
        raise c.fail(f"zero point of shape {list(zero)} for scales of shape {list(scale)}")
    if math.prod(scale) == 1 and len(scale) <= 1:
        return
    if len(scale) != 1:
        raise c.fail(f"scales of shape {list(scale)} (blocked quantization) are not supported")
    axis = int(c.attr("axis", 1))
    if not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {list(x)}")
    if scale[0] != x[axis]:
        raise c.fail(f"{scale[0]} scales for axis {axis} of {list(x)}")


# --- layers --------------------------------------------------------------------------------------


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
                f"weight of shape {_show(w)} is not [{layout} / group, *kernel] of dims >= 1"
            )
        if w[0] is not None and w[0] % group:
            raise c.fail(f"weight of shape {list(w)}: {w[0]} does not divide into group={group}")
        kernel = c.attr("kernel_shape")
        if kernel is not None and any(_differ(k, d) for k, d in zip(kernel, w[2:], strict=False)):
            raise c.fail(f"kernel_shape={list(kernel)} for a weight of shape {list(w)}")
    n = len(w) - 2 if w is not None else None
    _geometry(c, n)
    if w is None:
        return
    conv = c.node.op_type == "Conv"
    channels = w[1] * group if conv and w[1] is not None else w[0]
    units = w[0] if conv or w[1] is None else w[1] * group
    for side, shape, size in (("input", c.shape(0), channels), ("output", c.out_shape(), units)):
        if shape is not None and (len(shape) != len(w) or _differ(shape[1], size)):
            raise c.fail(
                f"{side} of shape {_show(shape)} for a weight of shape {_show(w)}, group={group}"
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
            raise c.fail(f"{side} of shape {_show(shape)} is not a matrix")
    y = c.out_shape()
    if y is not None and len(y) != 2:
        raise c.fail(f"output of shape {_show(y)} is not a matrix")
    if a is None or b is None:
        return
    (m, k_a), (k_b, n) = _oriented(a, c.attr("transA", 0)), _oriented(b, c.attr("transB", 0))
    if _differ(k_a, k_b) or (y is not None and (_differ(y[0], m) or _differ(y[1], n))):
        raise c.fail(f"A of shape {_show(a)} and B of shape {_show(b)} make no {_show(y)}")


def _oriented(shape: Shape, transposed: int) -> Shape:
    return tuple(reversed(shape)) if transposed else shape


@op_check("MatMul")
def matmul(c: NodeCheck) -> None:
    """Operands of rank >= 1 whose inner dims agree."""
    _numbers(c, 0)
    _numbers(c, 1)
    a, b = c.shape(0), c.shape(1)
    if any(s is not None and not s for s in (a, b)):
        raise c.fail(f"operands of shapes {_show(a)} and {_show(b)}: scalars do not multiply")
    if a is None or b is None:
        return
    y, product = c.out_shape(), _matmul_shape(a, b)
    if product is None or (y is not None and _clash(y, product)):
        raise c.fail(f"operands of shapes {_show(a)} and {_show(b)} make no {_show(y)}")


def _matmul_shape(a: Shape, b: Shape) -> Shape | None:
    """The shape of ``a @ b`` (numpy.matmul: vectors lose their axis); ``None`` if they clash."""
    left = (1, *a) if len(a) == 1 else a
    right = (*b, 1) if len(b) == 1 else b
    batch = _broadcast([left[:-2], right[:-2]])
    if batch is None or _differ(left[-1], right[-2]):
        return None
    return (*batch, *left[-2:-1][len(a) == 1 :], *right[-1:][len(b) == 1 :])


@op_check(*BROADCASTING)
def broadcasting(c: NodeCheck) -> None:
    """Inputs that broadcast together (numpy's rules) to the output's shape, where known."""
    _broadcasts(c, [c.shape(i) for i in range(len(c.node.input))])


@op_check("Expand")
def expand(c: NodeCheck) -> None:
    """A 1-D integer target the input broadcasts with, to the output's shape."""
    target = c.ints(1)
    if target is None:
        return
    if target.ndim != 1 or target.size > MAX_RANK:
        raise c.fail(f"shape must be 1-D with at most {MAX_RANK} dims, is {list(target.shape)}")
    _broadcasts(c, [c.shape(0), tuple(int(d) for d in target)])


@op_check("Tile")
def tile(c: NodeCheck) -> None:
    """One repeat count >= 0 per input axis; the output their product, where known."""
    repeats, x = c.ints(1), c.shape(0)
    if repeats is None:
        return
    if repeats.ndim != 1 or (repeats < 0).any():
        raise c.fail(f"repeats {repeats.tolist()} must be a 1-D list of integers >= 0")
    if x is None:
        return
    y = c.out_shape()
    if len(x) != repeats.size:
        raise c.fail(f"{repeats.size} repeats for an input of shape {_show(x)}")
    tiled = tuple(None if d is None else d * int(r) for d, r in zip(x, repeats, strict=True))
    if y is not None and _clash(y, tiled):
        raise c.fail(f"repeats {repeats.tolist()} of an input {_show(x)} make no {_show(y)}")


@op_check("Gather")
def gather(c: NodeCheck) -> None:
    """Integer indices (a constant's are read), an axis of the input."""
    c.ints(1)
    x, axis = c.shape(0), int(c.attr("axis", 0))
    if x is not None and not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {_show(x)}")


@op_check("Slice")
def slice_(c: NodeCheck) -> None:
    """Integer starts, ends, axes and steps, as many of each, no step 0."""
    given = [c.ints(i) for i in range(1, 5)]
    if c.node.attribute:  # before opset 10: attributes
        given = [np.asarray(c.attr(n), np.int64) for n in ("starts", "ends") if c.attr(n)]
    lengths = {v.size for v in given if v is not None}
    steps = given[3] if len(given) > 3 else None
    if len(lengths) > 1 or (steps is not None and (steps == 0).any()):
        shown = [None if v is None else v.tolist() for v in given]
        raise c.fail(f"starts, ends, axes, steps {shown}: one length each, no step 0")


@op_check("Concat")
def concat(c: NodeCheck) -> None:
    """Inputs of one rank, equal but along ``axis``; the output their concatenation."""
    shapes = [c.shape(i) for i in range(len(c.node.input))]
    y = c.out_shape()
    known = [s for s in (*shapes, y) if s is not None]
    if not known:
        return
    rank, axis = len(known[0]), int(c.attr("axis", 0))
    fits = all(len(s) == rank for s in known) and -rank <= axis < rank
    if fits:
        axis %= rank
        fits = all(len({s[j] for s in known} - {None}) <= 1 for j in range(rank) if j != axis)
        sizes = [None if s is None else s[axis] for s in shapes]
        if y is not None and None not in sizes:
            fits = fits and not _differ(y[axis], sum(sizes))
    if not fits:
        shown = ", ".join(_show(s) for s in shapes)
        raise c.fail(f"inputs of shapes {shown} do not concatenate on axis {axis} to {_show(y)}")


@op_check("Split")
def split(c: NodeCheck) -> None:
    """An axis of the input; one size >= 0 per output, adding up to the axis, where known."""
    sizes = c.attr("split")
    sizes = np.asarray(sizes if sizes is not None else c.ints(1))
    x = c.shape(0)
    axis = int(c.attr("axis", 0))
    if x is not None and not -len(x) <= axis < len(x):
        raise c.fail(f"axis={axis} is outside the {len(x)} axes of {_show(x)}")
    if sizes.ndim == 0:  # even split, or sizes computed at run time
        return
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or (sizes < 0).any():
        raise c.fail(f"split sizes {sizes.tolist()} must be a 1-D list of integers >= 0")
    total = None if x is None else x[axis]
    if sizes.size != len(c.node.output) or _differ(total, int(sizes.sum())):
        raise c.fail(
            f"split {sizes.tolist()} of axis {axis} of {_show(x)} into {len(c.node.output)}"
        )


@op_check("Pad")
def pad(c: NodeCheck) -> None:
    """Integer pads, two per padded axis; a known mode."""
    mode = c.attr("mode", b"constant")
    if mode not in (b"constant", b"reflect", b"edge", b"wrap"):
        raise c.fail(f"mode={mode!r} is not constant, reflect, edge or wrap")
    pads = c.attr("pads")
    pads = np.asarray(pads if pads is not None else c.ints(1))
    if pads.ndim == 0:  # computed at run time
        return
    axes, x = c.ints(3), c.shape(0)
    count = axes.size if axes is not None else (None if x is None else len(x))
    if (
        pads.ndim != 1
        or pads.dtype.kind not in "iu"
        or (count is not None and pads.size != 2 * count)
    ):
        raise c.fail(f"pads {pads.tolist()} must be two integers per padded axis")


def _broadcasts(c: NodeCheck, shapes: list[Shape | None]) -> None:
    """The known shapes broadcast together, and into the output's shape where known.

    With an input's shape unknown, the output may be larger than the known ones make.
    """
    known = [s for s in shapes if s is not None]
    if not known:
        return
    result, y = _broadcast(known), c.out_shape()
    if result is not None and y is not None and len(known) < len(shapes):
        result = _broadcast([*known, y])
    fits = result is not None and (y is None or not _clash(y, result))
    if not fits:
        shown = ", ".join(_show(s) for s in shapes)
        raise c.fail(f"inputs of shapes {shown} do not broadcast to {_show(y)}")


def _clash(a: Shape, b: Shape) -> bool:
    """Shapes of different ranks, or with a dim known in both that differs."""
    return len(a) != len(b) or any(_differ(x, y) for x, y in zip(a, b, strict=True))


def _broadcast(shapes: list[Shape]) -> Shape | None:
    """The broadcast of ``shapes`` (unknown dims match anything); ``None`` if they clash."""
    rank = max(len(s) for s in shapes)
    result: list[int | None] = []
    for axis in range(-rank, 0):
        dims = {s[axis] for s in shapes if -len(s) <= axis}
        sizes = {d for d in dims if d is not None and d != 1}
        if len(sizes) > 1:
            return None
        result.append(sizes.pop() if sizes else (None if None in dims else 1))
    return tuple(result)


def _numbers(c: NodeCheck, index: int) -> None:
    """A layer's stored weight holds numbers (not strings, booleans or complex values)."""
    data_type = c.stored_type(index)
    if data_type in _NOT_NUMBERS:
        kind = TensorProto.DataType.Name(data_type)
        raise c.fail(f"weight {c.input(index)!r} is {kind}; a layer's weights are numbers")


def _show(shape: Shape | None) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
