"""Structured handlers, one per op family of the op table (``onnxprune.graph.registry``).

Structured pruning adds its behaviour to the op families the connectivity graph registers, never
to op types of its own: ``@handler("arithmetic")`` makes ``fn`` the handler of every op type of
the ``arithmetic`` family, so an op type joining that family (in ``graph/rules``) is followed here
too. A handler describes how one node carries units (the spaces of its outputs, the ties between
slots, the initializers to slice, the rewrites, and the constant-propagation rule) or blocks the
units it reads. Families without a handler block what they read. ``HANDLERS`` imports
``structured.ops``, where every handler is registered, on its first read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx

from onnxprune.graph.registry import FAMILIES, OPS, op_key
from onnxprune.registry import Registry

if TYPE_CHECKING:
    from onnxprune.structured.groups import Builder

Handler = Callable[["Builder", onnx.NodeProto], None]


@dataclass(frozen=True, slots=True)
class StructuredRule:
    """The structured behaviour of one op family.

    Attributes:
        fn: the handler.
        layer: the ops make spaces of their own, so they are handled even when none of their
            inputs has a space (Conv, Gemm, MatMul, ConstantOfShape).
    """

    fn: Handler
    layer: bool = False


HANDLERS: Registry[StructuredRule] = Registry("structured handler", ("onnxprune.structured.ops",))
"""The structured rule of each op family that has one, by family name."""


def handler(*families: str, layer: bool = False) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the structured handler of each op family in ``families``.

    Raises:
        ValueError: a family the op table does not have, or one with a handler already.
    """

    def register(fn: Handler) -> Handler:
        for name in families:
            if name not in FAMILIES:
                known = ", ".join(sorted(FAMILIES))
                raise ValueError(f"no op family {name!r} to handle; the families are {known}")
            HANDLERS.check_new(name)
        for name in families:
            HANDLERS.add(name, StructuredRule(fn, layer))
        return fn

    return register


def rule_for(node: onnx.NodeProto) -> StructuredRule | None:
    """The structured rule of ``node``'s op family, or None (no family, or no rule for it)."""
    family = OPS.get(op_key(node.op_type, node.domain))
    return None if family is None else HANDLERS.get(family.name)
