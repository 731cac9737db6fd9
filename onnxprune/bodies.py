"""The bodies of control-flow nodes: the graphs an ``If``, ``Loop`` or ``Scan`` node carries.

A graph is kept in a node's attribute, one (``g``: a branch, a loop body) or several
(``graphs``); every walk that goes into bodies reads them through ``subgraphs``, so none
forgets one of the two fields.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx


def subgraphs(node: onnx.NodeProto) -> tuple[onnx.GraphProto, ...]:
    """The graphs held by ``node``'s attributes, in attribute order (none for most ops).

    Example:
        >>> from onnx import helper
        >>> branch = helper.make_graph([], "b", [], [])
        >>> node = helper.make_node(
        ...     "If", ["c"], ["y"], then_branch=branch, else_branch=branch
        ... )
        >>> len(subgraphs(node)), len(subgraphs(helper.make_node("Relu", ["x"], ["y"])))
        (2, 0)
    """
    return tuple(
        sub
        for attr in node.attribute
        for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs)
    )


def names_read(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Every tensor name ``nodes`` read, their bodies' reads and outputs included.

    A body's output may be an outer-scope tensor passed through unchanged, so it counts as read.
    """
    names: set[str] = set()
    for node in nodes:
        names.update(node.input)
        for sub in subgraphs(node):
            names |= names_read(sub.node) | {o.name for o in sub.output}
    return names
