"""The connectivity graph: units, transfer rules, and reachability at two levels."""

from onnxprune.graph.build import ConnectivityGraph, Fallback, Layer, Step, build_graph
from onnxprune.graph.channel import LayerActivity, channel_reachability
from onnxprune.graph.exact import exact_reachability
from onnxprune.graph.registry import NodeView, OpFamily, op_rule

__all__ = [
    "ConnectivityGraph",
    "Fallback",
    "Layer",
    "LayerActivity",
    "NodeView",
    "OpFamily",
    "Step",
    "build_graph",
    "channel_reachability",
    "exact_reachability",
    "op_rule",
]
