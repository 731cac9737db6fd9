"""The op table: one registration per op family gives every layer its knowledge of the op.

An *op family* is a set of op types that behave alike. It is registered once, in
``graph/rules/<module>.py``, by decorating its transfer rule::

    @op_rule("Add", "Sum", ..., family="arithmetic", constants=ARITHMETIC)
    def pointwise(node: NodeView) -> Transfer: ...

Op types of the default ONNX domain are keyed by their name; those of another domain (ONNX
Runtime's ``com.microsoft`` contrib ops) by ``domain::name`` (``op_key``), registered with
``op_rule(..., domain="com.microsoft")``: ``com.microsoft::Gelu`` is not ONNX's ``Gelu``.

and the ``OpFamily`` record holds what the op types share:

- ``transfer``: how units flow through the op, for the connectivity graph (``build``); an op
  without a family falls back to dense mixing, which can only under-report effective sparsity,
  and the fallback is recorded with its reason;
- ``constants``: per op type, the op applied to per-unit constants (NumPy), which structured
  pruning uses to know what a unit holds when its inputs' units are constant.

Layers downstream of ``graph`` add their own behaviour *to a family*, never to an op type:
structured pruning registers one handler per family (``onnxprune.structured.handlers.handler``,
keyed by the family name, which must be registered here), with the ties, slices and rewrites of
its surgery. The handlers stay in ``structured`` because they build its dependency groups
(``Builder``, ``Slice``, ``Consumer``); keeping them there keeps one arrow: ``graph`` never
imports ``structured``, and ``structured`` reads ``OPS`` to find a node's family, then its own
handler. So a new op type joins a family in one place (its op list in ``graph/rules``) and every
layer follows it; a new kind of op gets a family in ``graph/rules`` and, if structured pruning
should follow it, a handler there. Op types never appear twice: ``op_rule`` refuses an op type
or family name already registered, ``handler`` a family unknown here or handled twice.

Nothing is discovered by scanning modules: ``FAMILIES`` and ``OPS`` import ``graph.rules`` on
their first read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxprune.graph.shapes import Shape
from onnxprune.graph.transfers import Transfer
from onnxprune.registry import Registry
from onnxprune.weights import ConstantResolver, attr

Rule = Callable[["NodeView"], Transfer | tuple[Transfer, ...]]
Constants = Callable[..., np.ndarray]
"""An op applied to per-unit constants; each family documents the arguments its ops take."""


@dataclass(frozen=True, slots=True)
class OpFamily:
    """Op types that share a transfer rule and the behaviour downstream layers give them.

    Attributes:
        name: the family's name, unique (downstream layers key their behaviour by it).
        op_types: its op types as ``op_key`` writes them, each in no other family.
        transfer: the transfer rule of every op type of the family.
        constants: per op type (some or all, keyed alike), the op applied to per-unit
            constants.
    """

    name: str
    op_types: tuple[str, ...]
    transfer: Rule
    constants: Mapping[str, Constants] = field(default_factory=dict)


_RULES = ("onnxprune.graph.rules",)
FAMILIES: Registry[OpFamily] = Registry("op family", _RULES)
"""Every op family by name."""
OPS: Registry[OpFamily] = Registry("op type", _RULES)
"""The family of every op type with one, keyed by ``op_key``."""


def op_key(op_type: str, domain: str = "") -> str:
    """The op table's key of ``op_type`` in ``domain``: the bare op type in the default domain.

    Example:
        >>> op_key("Gelu"), op_key("Gelu", "ai.onnx"), op_key("Gelu", "com.microsoft")
        ('Gelu', 'Gelu', 'com.microsoft::Gelu')
    """
    return op_type if domain in ("", "ai.onnx") else f"{domain}::{op_type}"


def op_rule(
    *op_types: str,
    family: str | None = None,
    constants: Mapping[str, Constants] | None = None,
    domain: str = "",
) -> Callable[[Rule], Rule]:
    """Register the op family ``family`` (default: the rule's name) with ``fn`` as its transfer.

    Decorators stack: one transfer rule may serve several families.

    Args:
        op_types: the family's op types (bare names).
        family: its name.
        constants: per op type of the family (bare names), the op applied to per-unit
            constants.
        domain: the op types' domain (default: ONNX's).

    Raises:
        ValueError: the family name or an op type is registered already, or ``constants``
            names an op type outside the family.
    """
    keys = tuple(op_key(op, domain) for op in op_types)
    by_key = {op_key(op, domain): fn for op, fn in (constants or {}).items()}

    def register(fn: Rule) -> Rule:
        entry = OpFamily(family or fn.__name__, keys, fn, by_key)
        stray = set(entry.constants) - set(keys)
        if stray:
            raise ValueError(f"constants for {sorted(stray)} outside family {entry.name!r}")
        if len(set(keys)) != len(keys):
            raise ValueError(f"family {entry.name!r} lists an op type twice")
        FAMILIES.check_new(entry.name)
        for op in keys:
            OPS.check_new(op)
        FAMILIES.add(entry.name, entry)
        for op in keys:
            OPS.add(op, entry)
        return fn

    return register


def lookup(op_type: str, domain: str = "") -> Rule | None:
    """The transfer rule for ``op_type`` of ``domain``, or ``None`` (dense fallback)."""
    entry = OPS.get(op_key(op_type, domain))
    return None if entry is None else entry.transfer


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

    @property
    def key(self) -> str:
        """The op type as the op table keys it (``op_key``)."""
        return op_key(self.node.op_type, self.node.domain)

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
    if shape and shape[0] is None:
        shape = (1, *shape[1:])
    if None in shape:
        return None
    return tuple(map(int, shape))
