"""The registry of load-time op checks, what a check reads (``NodeCheck``), and the drivers.

Shapes here are tuples with ``None`` for an unknown dim; helpers compare them with unknown dims
matching anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxprune.errors import InvalidModelError
from onnxprune.weights import ConstantResolver, attr

SMALL = 1024
"""Largest helper tensor (a shape, axes) whose value a check reads."""
MAX_RANK = 32
"""Largest rank a computed constant may have (NumPy allows 64)."""

Shape = tuple[int | None, ...]
Check = Callable[["NodeCheck"], None]
CHECKS: dict[str, Check] = {}
"""The check of each op type that has one (filled by the modules of this package)."""
BROADCASTING = ("Add", "Sum", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "PRelu", "Where")
SHAPED = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Expand", "Tile", "Concat", *BROADCASTING)
"""Ops whose checks compare shapes: they run again once shapes are inferred (``check_shapes``)."""


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


def differ(a: int | None, b: int | None) -> bool:
    """Two dims that are both known and differ."""
    return a is not None and b is not None and a != b


def broadcasts(c: NodeCheck, shapes: list[Shape | None]) -> None:
    """The known shapes broadcast together, and into the output's shape where known.

    With an input's shape unknown, the output may be larger than the known ones make.
    """
    known = [s for s in shapes if s is not None]
    if not known:
        return
    result, y = broadcast(known), c.out_shape()
    if result is not None and y is not None and len(known) < len(shapes):
        result = broadcast([*known, y])
    fits = result is not None and (y is None or not clash(y, result))
    if not fits:
        shown = ", ".join(show(s) for s in shapes)
        raise c.fail(f"inputs of shapes {shown} do not broadcast to {show(y)}")


def clash(a: Shape, b: Shape) -> bool:
    """Shapes of different ranks, or with a dim known in both that differs."""
    return len(a) != len(b) or any(differ(x, y) for x, y in zip(a, b, strict=True))


def broadcast(shapes: list[Shape]) -> Shape | None:
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


def show(shape: Shape | None) -> str:
    """``[1, ?, 4]``, or ``unknown``."""
    if shape is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
