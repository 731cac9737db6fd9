"""The transfer-rule registry: op type -> function from a node to a ``Transfer`` value.

Rules are registered explicitly with ``@transfer_rule("Concat", ...)``; nothing is discovered by
scanning modules. An op without a rule falls back to dense mixing, which can only under-report
effective sparsity, and the fallback is recorded with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxprune.graph._shapes import Shape
from onnxprune.graph.transfers import Transfer
from onnxprune.weights import ConstantResolver, attr

Rule = Callable[["NodeView"], Transfer | tuple[Transfer, ...]]

RULES: dict[str, Rule] = {}


def transfer_rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the transfer rule of each op type in ``op_types`` (default domain)."""

    def register(fn: Rule) -> Rule:
        for op in op_types:
            if op in RULES:
                raise ValueError(f"transfer rule for {op!r} registered twice")
            RULES[op] = fn
        return fn

    return register


def lookup(op_type: str) -> Rule | None:
    """The rule for ``op_type``, or ``None`` when there is none (the op falls back to dense)."""
    return RULES.get(op_type)


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node with what rules need: attributes, shapes, and which inputs are constant."""

    node: onnx.NodeProto
    in_shapes: tuple[Shape | None, ...]
    out_shapes: tuple[Shape | None, ...]
    activations: tuple[int, ...]
    constants: ConstantResolver
    opset: int

    @property
    def op_type(self) -> str:
        """The ONNX op type."""
        return self.node.op_type

    def attr(self, name: str, default: Any = None) -> Any:
        """Attribute ``name`` as a Python value, or ``default`` when absent."""
        return attr(self.node, name, default)

    def const(self, index: int) -> np.ndarray | None:
        """Value of input ``index`` when it is a constant (absent optional inputs give ``None``)."""
        if index >= len(self.node.input) or not self.node.input[index]:
            return None
        return self.constants.value(self.node.input[index])

    def static_in(self, index: int) -> tuple[int, ...] | None:
        """Input ``index``'s shape with batch set to 1, or ``None`` if another dim is unknown."""
        return static(self.in_shapes[index] if index < len(self.in_shapes) else None)

    def static_out(self, index: int = 0) -> tuple[int, ...] | None:
        """Output ``index``'s shape with batch set to 1, or ``None`` if any other dim is unknown."""
        return static(self.out_shapes[index] if index < len(self.out_shapes) else None)


def static(shape: Shape | None) -> tuple[int, ...] | None:
    """``shape`` with a symbolic batch (axis 0) set to 1; ``None`` if another dim is unknown."""
    if shape is None:
        return None
    dims = [1 if (i == 0 and d is None) else d for i, d in enumerate(shape)]
    if any(d is None for d in dims):
        return None
    return tuple(int(d) for d in dims)
