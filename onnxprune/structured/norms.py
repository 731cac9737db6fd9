"""Normalization layers by module: their channels, each one's scale, those pruning must keep.

A norm's scale (``gamma``) multiplies each channel after normalizing it: a channel whose scale
is zero carries no signal past the norm (it outputs its bias, a constant); the values are read
by the caller (``sparsity``), from memory or an external file. ``analyze`` lists
each norm op beside the heads and neurons (``SparsityReport.blocks``): a decomposed norm (a
TorchScript RMSNorm's ``Pow``/``ReduceMean``/``Mul``) is no norm op and is not listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph.build import layer_label
from onnxprune.structured.groups import Groups

SCALE_INPUT = {
    ("", "LayerNormalization"): 1,
    ("", "BatchNormalization"): 1,
    ("", "InstanceNormalization"): 1,
    ("", "GroupNormalization"): 1,
    ("", "RMSNormalization"): 1,
    ("", "SimplifiedLayerNormalization"): 1,
    ("com.microsoft", "SimplifiedLayerNormalization"): 1,
    ("com.microsoft", "SkipLayerNormalization"): 2,
    ("com.microsoft", "SkipSimplifiedLayerNormalization"): 2,
}
"""Per normalization op (domain, type): the input holding its scale."""


@dataclass(frozen=True)
class NormLayer:
    """One normalization node with a constant scale.

    Attributes:
        module: a readable name (``graph.build.layer_label``).
        scale: the stored name of its scale (the exporter's, where structured pruning gave
            this norm a copy of a vector several layers read).
        channels: the scale's entries.
        blocked: channels structured pruning must keep (all of them when it cannot follow the
            norm's output).
    """

    module: str
    scale: str
    channels: int
    blocked: int


def norm_layers(
    graph: onnx.GraphProto,
    arrays: Mapping[str, np.ndarray],
    groups: Groups,
    copies: Mapping[str, str],
) -> tuple[NormLayer, ...]:
    """The normalization nodes of ``graph`` whose scale is an initializer in ``arrays``.

    ``copies`` maps a copy of a stored vector to the stored name (``compact.Workspace``).
    """
    found = []
    for node in graph.node:
        index = SCALE_INPUT.get(("" if node.domain == "ai.onnx" else node.domain, node.op_type))
        if index is None or len(node.input) <= index or node.input[index] not in arrays:
            continue
        scale = node.input[index]
        size = int(arrays[scale].size)
        space = groups.spaces.get(node.output[0]) if node.output else None
        if space is None or space.size != size:
            blocked = size
        else:
            blocked = int(groups.blocked[groups.of(space.tensor)].sum())
        stored = copies.get(scale, scale)
        found.append(NormLayer(layer_label(node, stored), stored, size, blocked))
    return tuple(found)
