"""Channel-level effective sparsity of a graph whose masks change a few weights at a time.

An effective target's search analyses the model once per step, and between two steps only the
weights ranked between the two removal counts change. A full analysis rebuilds every layer's
edge (``channel.layer_edge``: the weight's nonzero pattern packed, or its tap counts per
channel pair) from the masked weight, a pass over every weight. ``MaskedChannels`` keeps the
edges and updates, for the weights that changed, only their own bits or tap counts; the passes
over the units then run on those edges, which hold far fewer entries than the weights. A layer that
changes in bulk, or whose edge is kept sparse (grouped convolutions), is rebuilt from its
pattern. Each step's answer is the one ``sparsity_report`` gives for the masked graph.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from onnxprune.graph._bits import BitMatrix
from onnxprune.graph.build import ConnectivityGraph, Layer
from onnxprune.graph.channel import (
    Edge,
    Passes,
    channel_wiring,
    layer_edge,
    wired_reachability,
)

REBUILD = 16
"""A layer whose changes reach ``1 / REBUILD`` of its weights gets its edge rebuilt whole."""


def unsupported(graph: ConnectivityGraph, level: str) -> str | None:
    """Why ``MaskedChannels`` cannot follow ``graph`` at ``level`` (``None``: it can).

    It follows the channel level of a graph without bodies, recurrent layers (their units are
    built from the weights themselves) or weights used by several layers.
    """
    if level != "channel":
        return f"the {level} level"
    if graph.bodies:
        return "If/Loop/Scan bodies"
    if any(step.recurrent for step in graph.steps):
        return "recurrent layers"
    names = [layer.name for layer in graph.layers]
    if len(set(names)) < len(names):
        return "weights used by several layers"
    return None


class MaskedChannels:
    """The graph with masks on some of its weights, its layers' edges kept up to date.

    The state (masks, edges) belongs to this object and changes with :meth:`toggle`.
    """

    def __init__(self, graph: ConnectivityGraph, masks: Mapping[str, np.ndarray]) -> None:
        """``graph`` (unmasked) with ``masks`` (consumed layout, ``True`` = kept) applied.

        Raises:
            ValueError: ``unsupported(graph, "channel")`` says why not.
        """
        reason = unsupported(graph, "channel")
        if reason is not None:
            raise ValueError(f"MaskedChannels cannot follow {reason}")
        self._graph = graph
        self._layers = {layer.name: layer for layer in graph.layers if layer.name in masks}
        self._present = {
            name: np.ascontiguousarray(graph.weight(layer) != 0).reshape(-1)
            for name, layer in self._layers.items()
        }
        self._params = sum(math.prod(layer.shape) for layer in graph.layers)
        self._masks = {
            name: np.array(masks[name], bool, copy=True).reshape(-1) for name in self._layers
        }
        self._wiring = channel_wiring(self._patterns(self._layers))  # of the masked weights
        self._memo: dict = {}  # each layer's activity, counted again only when it changes
        self._passes = Passes(graph, self._wiring.links, self._wiring.layouts)
        self._changed: set[int] = set()  # links whose edge changed since the passes ran

    @property
    def size(self) -> int:
        """Number of masked weights."""
        return sum(mask.size for mask in self._masks.values())

    def reset(self, masks: Mapping[str, np.ndarray]) -> None:
        """Replace every mask by ``masks`` (the same weights), rebuilding their edges."""
        self._masks = {
            name: np.array(masks[name], bool, copy=True).reshape(-1) for name in self._layers
        }
        self._rebuild(self._layers)

    def toggle(self, changes: Mapping[str, np.ndarray]) -> None:
        """Flip the masks at ``changes`` (flat consumed indices per weight name)."""
        rebuild, updated = {}, {}
        for name, flat in changes.items():
            layer, mask, present = self._layers[name], self._masks[name], self._present[name]
            flat = np.asarray(flat, np.int64)
            edge = self._wiring.layers[layer.node][2]
            if flat.size * REBUILD >= mask.size or not _updatable(edge):
                mask[flat] = ~mask[flat]
                rebuild[name] = layer
                continue
            removed = mask[flat]
            mask[flat] = ~removed
            live = flat[present[flat]]
            gone = live[removed[present[flat]]]
            back = live[~removed[present[flat]]]
            updated[layer.node] = _updated(layer, edge, gone, back)
        self._with_edges(updated)
        self._rebuild(rebuild)

    def inactive(self) -> int:
        """Weights of the graph's layers that are zero, masked, or on no input-output path."""
        self._passes.update(self._wiring.links, self._changed)
        self._changed = set()
        activity = wired_reachability(
            self._graph, self._wiring, memo=self._memo, passes=self._passes
        )
        return self._params - sum(activity[layer.key].active for layer in self._graph.layers)

    def effective_sparsity(self) -> float:
        """``inactive`` over the layers' weights: ``SparsityReport.effective_sparsity``."""
        return self.inactive() / self._params if self._params else 0.0

    def _rebuild(self, layers: Mapping[str, Layer]) -> None:
        """The edges of ``layers`` built afresh from their kept patterns."""
        patterns = self._patterns(layers)
        self._with_edges({layer.node: layer_edge(patterns, layer) for layer in layers.values()})

    def _with_edges(self, edges: Mapping[str, Edge]) -> None:
        """The wiring with ``edges`` (by layer node), their links marked for the passes."""
        self._wiring = self._wiring.with_edges(edges)
        self._changed.update(self._wiring.layers[node][0] for node in edges)

    def _patterns(self, layers: Mapping[str, Layer]) -> ConnectivityGraph:
        """The graph with the kept nonzero pattern of ``layers`` as their weights."""
        overrides = {
            name: layer.contract.source.to_stored(
                (self._present[name] & self._masks[name]).reshape(layer.shape)
            )
            for name, layer in layers.items()
        }
        return dataclasses.replace(self._graph, overrides=overrides)


def _updatable(edge: Edge) -> bool:
    """Edges updated entry by entry: packed patterns and dense tap counts."""
    return isinstance(edge[0], (BitMatrix, np.ndarray))


def _updated(layer: Layer, edge: Edge, gone: np.ndarray, back: np.ndarray) -> Edge:
    """``edge`` with the nonzero weights at ``gone`` removed and those at ``back`` restored.

    Flat indices are in the consumed layout: ``[rows, cols]`` of a matmul, ``[A, B, *kernel]``
    of a convolution, whose edge counts each channel pair's nonzero valid taps (``[B, A]`` for
    a convolution, ``[A, B]`` for a transposed one) or packs those counts when there is one tap.
    """
    matrix, valid, nonzero = edge
    nonzero += back.size - gone.size
    conv = layer.contract.kind != "matmul"
    taps = math.prod(layer.shape[2:]) if conv else 1
    for flat, add in ((gone, False), (back, True)):
        if conv and not valid.all():
            flat = flat[valid.reshape(-1)[flat % taps]]
        pair = flat // taps
        if isinstance(matrix, BitMatrix):
            cols = matrix.shape[0] if matrix.transposed else matrix.shape[1]
            row, col = np.divmod(pair, cols)
            bit = np.right_shift(0x80, col & 7).astype(np.uint8)
            np.bitwise_xor.at(matrix.bits, (row, col >> 3), bit)
            continue
        a, b = np.divmod(pair, layer.shape[1])
        where = (b, a) if layer.contract.kind == "conv" else (a, b)
        (np.add if add else np.subtract).at(matrix, where, 1)
    return matrix, valid, nonzero
