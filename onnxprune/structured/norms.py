"""Normalization layers by module: their channels, each one's scale, those pruning must keep.

A norm's scale (``gamma``) multiplies each channel after normalizing it: a channel whose scale
is zero carries no signal past the norm (it outputs its bias, a constant); the values are read
by the caller (``sparsity``), from memory or an external file. ``analyze`` lists
each norm beside the heads and neurons (``SparsityReport.blocks``): the norm ops, and the norms
exporters write out in plain ops (``decomposed_scale``): LLaMA's RMSNorm in both torch
exporters, ``x * 1/sqrt(mean(x^2) + eps)`` times its scale, and a LayerNorm at opsets before 17.
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

_CASTS = ("Cast",)
_ROOT = ("Cast", "Reciprocal", "Sqrt", "Add")  # 1/sqrt(mean + eps), Cast anywhere
_STEPS = 8


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
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        index = SCALE_INPUT.get(("" if node.domain == "ai.onnx" else node.domain, node.op_type))
        if index is not None and len(node.input) > index and node.input[index] in arrays:
            scale = node.input[index]
        else:
            scale = decomposed_scale(node, producers, arrays)
        if scale is None:
            continue
        size = int(arrays[scale].size)
        space = groups.spaces.get(node.output[0]) if node.output else None
        if space is None or space.size != size:
            blocked = size
        else:
            blocked = int(groups.blocked[groups.of(space.tensor)].sum())
        stored = copies.get(scale, scale)
        found.append(NormLayer(layer_label(node, stored), stored, size, blocked))
    return tuple(found)


def decomposed_scale(
    node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto], arrays: Mapping[str, np.ndarray]
) -> str | None:
    """The scale of a norm written in plain ops that ends at ``node``, or None.

    ``node`` multiplies a 1-D initializer (the scale) by ``x * r`` or ``x / s``, where ``s`` is
    ``sqrt(mean(x^2) + eps)`` and ``r`` its reciprocal (``Reciprocal`` or a ``Div`` of a
    constant), ``Cast`` steps allowed anywhere. ``x`` is the input (RMSNorm) or the input minus
    its mean (LayerNorm).
    """
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    for scale, other in (node.input, reversed(node.input)):
        if scale in arrays and arrays[scale].ndim == 1 and _normalized(other, producers):
            return scale
    return None


def _normalized(name: str, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """Whether ``name`` is ``x * 1/sqrt(mean(x^2) + eps)`` or ``x / sqrt(...)`` (``Cast`` too)."""
    node = producers.get(_skip(name, producers, _CASTS))
    if node is None or len(node.input) != 2:
        return False
    a, b = node.input
    if node.op_type == "Mul":
        return _root_of(b, a, producers) or _root_of(a, b, producers)
    return node.op_type == "Div" and _root_of(b, a, producers)


def _root_of(name: str, x: str, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """Whether ``name`` is ``sqrt(mean(x^2) + eps)`` or its reciprocal, ``Cast`` anywhere."""
    for _ in range(_STEPS):
        node = producers.get(name)
        if node is None or not node.input:
            return False
        if node.op_type == "ReduceMean":
            return _squares(node.input[0], x, producers)
        numerator = producers.get(node.input[0])
        if node.op_type == "Div" and (numerator is None or numerator.op_type == "Constant"):
            name = node.input[-1]  # 1 / sqrt(...): a stored 1 (initializer or Constant node)
        elif node.op_type in _ROOT:
            name = node.input[0]
        else:
            return False
    return False


def _squares(name: str, x: str, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """Whether ``name`` is ``Pow(x, 2)`` or ``x * x`` (``Cast`` steps skipped on both sides)."""
    node = producers.get(_skip(name, producers, _CASTS))
    if node is None or node.op_type not in ("Pow", "Mul") or len(node.input) != 2:
        return False
    base = _skip(node.input[0], producers, _CASTS)
    if node.op_type == "Mul" and base != _skip(node.input[1], producers, _CASTS):
        return False
    return base == _skip(x, producers, _CASTS)


def _skip(name: str, producers: Mapping[str, onnx.NodeProto], ops: tuple[str, ...]) -> str:
    """``name`` behind the ``ops`` (one-input steps such as ``Cast``) that produce it."""
    for _ in range(_STEPS):
        node = producers.get(name)
        if node is None or node.op_type not in ops:
            return name
        name = node.input[0]
    return name
