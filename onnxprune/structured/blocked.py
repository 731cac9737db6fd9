"""Why structured pruning leaves units alone: blocked dependency groups and their reasons.

A dependency group is blocked when something its units reach cannot follow their removal: a
graph output, an op without a structured rule (Softmax, Shape, an op of another domain), a
Reshape whose target is computed at run time, a weight another node reads too. ``Builder.block``
records a ``Block`` naming that op and node; ``blocked_groups`` turns the blocked groups holding
filters into ``BlockedGroup`` values for the results of ``structured_prune`` and ``compact``.
Weights inside ``If``/``Loop``/``Scan`` bodies are never cut: ``body_blocks`` names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxprune.graph.build import build_graph

if TYPE_CHECKING:
    from onnxprune.structured.groups import Groups


@dataclass(frozen=True, slots=True)
class Block:
    """Why units must stay.

    Attributes:
        reason: one line naming what blocks them: ``"Softmax node 'sm': no structured rule for
            this op"``, ``"graph output 'y'"``.
        op_type: the op that cannot follow them (``domain::op`` outside the default domain);
            None for a graph output.
        node: that node's name (its first output's when it has none); None for a graph output.
    """

    reason: str
    op_type: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class BlockedGroup:
    """Dependency groups that stay whole, the layers whose units they hold, and why.

    Groups alike (the same layers, the same reason: the channels of one Conv before a Softmax)
    are one value counting them.

    Attributes:
        layers: the weights whose filters (units) the groups hold, in graph order.
        reason: what blocks them, one line (``Block.reason``).
        op_type: the op that blocks them; None for a graph output.
        node: that node's name; None for a graph output.
        groups: how many groups: units each layer keeps because of this.
    """

    layers: tuple[str, ...]
    reason: str
    op_type: str | None
    node: str | None
    groups: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "layers": list(self.layers),
            "reason": self.reason,
            "op_type": self.op_type,
            "node": self.node,
            "groups": self.groups,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockedGroup:
        """The value ``to_dict`` wrote (a result JSON, a reply from the server)."""
        return cls(
            tuple(data["layers"]), data["reason"], data["op_type"], data["node"], data["groups"]
        )


def by_reason(blocked: Iterable[BlockedGroup]) -> list[BlockedGroup]:
    """One value per reason (groups summed, layers joined in order), most groups first.

    What a reader wants first: the few things that keep most of the model whole.

    Example:
        >>> a = BlockedGroup(("w1",), "graph output 'y'", None, None, 2)
        >>> b = BlockedGroup(("w2",), "graph output 'y'", None, None, 3)
        >>> c = BlockedGroup(("w3",), "Softmax node 'sm': no rule", "Softmax", "sm", 4)
        >>> [(g.reason, g.layers, g.groups) for g in by_reason([a, c, b])]
        [("graph output 'y'", ('w1', 'w2'), 5), ("Softmax node 'sm': no rule", ('w3',), 4)]
    """
    merged: dict[str, BlockedGroup] = {}
    for group in blocked:
        seen = merged.get(group.reason)
        if seen is None:
            merged[group.reason] = group
            continue
        layers = seen.layers + tuple(n for n in group.layers if n not in seen.layers)
        merged[group.reason] = BlockedGroup(
            layers, seen.reason, seen.op_type, seen.node, seen.groups + group.groups
        )
    return sorted(merged.values(), key=lambda group: -group.groups)


def plural(count: int, noun: str) -> str:
    """``3 groups``, ``1 group``: a count with its noun (English ``s`` plural)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def blocked_groups(groups: Groups) -> tuple[BlockedGroup, ...]:
    """The blocked groups of ``groups`` that hold filters, alike ones counted together.

    Groups without filters (units no layer produces) have nothing to prune and are left out.
    """
    layers: dict[int, list[str]] = {}
    for s in groups.filters:
        labels = groups.of(s.tensor)
        for group in np.unique(labels[groups.blocked[labels]]).tolist():
            names = layers.setdefault(group, [])
            if s.name not in names:
                names.append(s.name)
    counts: dict[tuple[tuple[str, ...], Block], int] = {}
    for group, names in layers.items():
        key = (tuple(names), groups.reasons[group])
        counts[key] = counts.get(key, 0) + 1
    return tuple(
        BlockedGroup(names, why.reason, why.op_type, why.node, n)
        for (names, why), n in counts.items()
    )


BODY_REASON = (
    "{op} node '{node}': weights inside its bodies stay whole (structured pruning and "
    "compaction leave If/Loop/Scan bodies alone; unstructured pruning reaches them)"
)


def body_blocks(model: onnx.ModelProto) -> tuple[BlockedGroup, ...]:
    """One value per ``If``/``Loop``/``Scan`` node of the main graph with weights in its bodies.

    Structured pruning follows the main graph only; it leaves every body as it is, so their
    layers keep all their units (``groups``: how many such layers).
    """
    nodes = model.graph.node
    if not any(a.type == onnx.AttributeProto.GRAPH for n in nodes for a in n.attribute):
        return ()
    bodies = {body.scope: body for body in build_graph(model).bodies}
    found = []
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{index}"
        scopes = [f"{name}/{a.name}" for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
        layers = tuple(
            dict.fromkeys(
                layer.name
                for scope in scopes
                if scope in bodies
                for layer in bodies[scope].all_layers
            )
        )
        if layers:
            shown = node.name or node.output[0]  # as ``Block`` names a node
            why = BODY_REASON.format(op=node.op_type, node=shown)
            found.append(BlockedGroup(layers, why, node.op_type, shown, len(layers)))
    return tuple(found)
