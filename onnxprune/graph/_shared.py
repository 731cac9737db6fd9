"""Weights read on both sides of a body's boundary: shared, though each graph sees one reader.

``weights.weight_readers`` counts the readers of one graph. A weight the main graph stores and
reads, and that an ``If`` branch or a ``Loop``/``Scan`` body reads too (from the outer scope), has
one reader in each: pruning it for one changes the other all the same. ``across_bodies`` marks
such a weight shared in every graph that uses it, naming all its readers. A weight only bodies
read (both branches of an ``If``, one of which runs) stays as each body finds it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import onnx

from onnxprune.graph.shapes import BodyPath
from onnxprune.weights import ConstantResolver, weight_readers

if TYPE_CHECKING:
    from onnxprune.graph.build import ConnectivityGraph

Readers = dict[tuple[BodyPath, str], list[tuple[BodyPath, str]]]
"""Per stored weight (its graph's path, its name): each reader's graph path and scoped name."""


def across_bodies(
    graph: onnx.GraphProto, constants: ConstantResolver, built: ConnectivityGraph
) -> ConnectivityGraph:
    """``built`` (``graph``'s connectivity graph) with the weights read across a body's boundary.

    Each is added to ``shared`` wherever a layer uses it, with every reader (scoped node names).
    """
    found: Readers = {}
    _readers(graph, constants, "", (), found)
    crossing = {
        key: tuple(name for _, name in readers)
        for key, readers in found.items()
        if {path for path, _ in readers} - {key[0]} and key[0] in {path for path, _ in readers}
    }
    return _marked(built, crossing) if crossing else built


def _readers(
    graph: onnx.GraphProto, constants: ConstantResolver, scope: str, path: BodyPath, found: Readers
) -> None:
    """Add the readers of ``graph`` (at ``scope``, ``path``) and of its bodies to ``found``.

    Nodes and bodies are named as ``graph.build`` names them.
    """
    for stored, names in weight_readers(graph, constants).items():
        source = constants.source(stored)
        where = found.setdefault((source.path, source.name), [])
        where.extend((path, f"{scope}/{n}" if scope else n) for n in names)
    for index, node in enumerate(graph.node):
        node_name = node.name or f"{node.op_type}_{index}"
        node_name = f"{scope}/{node_name}" if scope else node_name
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                inner = f"{node_name}/{a.name}"
                resolver = constants.body(a.g, inner, index, a.name)
                _readers(a.g, resolver, inner, (*path, (index, a.name)), found)


def _marked(
    built: ConnectivityGraph, crossing: dict[tuple[BodyPath, str], tuple[str, ...]]
) -> ConnectivityGraph:
    """``built`` and its bodies with their layers' crossing weights in ``shared``."""
    shared = dict(built.shared)
    for layer in built.layers:
        source = layer.contract.source
        readers = crossing.get((source.path, source.name))
        if readers is not None:
            shared[layer.name] = readers
    bodies = tuple(_marked(body, crossing) for body in built.bodies)
    return dataclasses.replace(built, shared=shared, bodies=bodies)
