"""Direct and effective sparsity of a model: pure functions over the connectivity graph.

Direct sparsity counts zero weights. Effective sparsity also counts nonzero weights that lie on
no path from a graph input to a graph output (Vysogorets & Kempe, arXiv 2107.02306, Sec. 3): their
source unit is not reachable from the input, or their target unit cannot reach the output.

Biases do not make a unit reachable: a unit with a bias but no input path emits a constant, and
its outgoing weights are counted inactive, as the paper does. Removing them is exact only if the
constant is folded into the next layer's bias (compaction does that).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnxprune.errors import InvalidOptionError, ShapeError
from onnxprune.external_data import load_model_lazy
from onnxprune.graph.build import ConnectivityGraph, Layer, build_graph
from onnxprune.graph.channel import LayerActivity, channel_reachability
from onnxprune.graph.contrib_shapes import ATTENTION
from onnxprune.graph.conv_geometry import tap_counts
from onnxprune.graph.exact import exact_reachability
from onnxprune.graph.rules.recurrent import GATES
from onnxprune.macs import NodeMacs, graph_macs, total
from onnxprune.model import DEFAULT_MAX_BYTES, ModelSource, load_model, shapes_only
from onnxprune.report import GateSparsity, LayerSparsity, SparsityReport
from onnxprune.unit_report import NORM_CHANNEL, BlockSparsity, HeadSparsity
from onnxprune.weights import ConstantResolver

if TYPE_CHECKING:
    from onnxprune.structured.norms import NormLayer
    from onnxprune.structured.units import ModelUnits

LEVELS = {"channel": channel_reachability, "exact": exact_reachability}


def analyze(
    model: ModelSource,
    *,
    level: str = "channel",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    units: bool | None = None,
) -> SparsityReport:
    """Direct and effective sparsity of ``model``, per prunable layer and overall.

    Args:
        model: a path, serialized bytes or an ``onnx.ModelProto``.
        level: ``"channel"`` (fast; units are channels and neurons) or ``"exact"`` (every
            channel at every spatial position; equals the paper's reference computation).
        input_shapes: fixed shapes for inputs with symbolic dimensions, e.g.
            ``{"x": (1, 3, 32, 32)}``.
        dims: sizes of symbolic dimensions by name, e.g. ``{"batch": 1, "sequence": 128}``.
        max_bytes: largest model accepted.
        units: also the sparsity per structured unit (``SparsityReport.blocks``: each
            attention head, each FFN's neurons, each norm, named by module). It finds the
            dependency groups and counts each unit layer's activity mask per unit as the
            analysis makes it (``_UnitCounts``).
            ``None`` (the default): when the model has attention or recurrent layers
            (``unit_layers``), where heads and hidden units say what the layer table does not;
            a network of Conv and dense layers alone skips them (its units are the channels
            and neurons the layer table counts, and they would cost as much again).

    Returns:
        A ``SparsityReport``.

    Raises:
        InvalidModelError: the model cannot be read safely.
        InvalidOptionError: unknown level, bad ``input_shapes`` or ``dims``.
        ShapeError: the exact level needs static shapes the model does not give.

    Example:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> import numpy as np
        >>> w = numpy_helper.from_array(np.array([[1.0, 0.0], [0.0, 0.0]], np.float32), "w")
        >>> g = helper.make_graph(
        ...     [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> analyze(m).direct_sparsity
        0.75
    """
    if level not in LEVELS:
        raise InvalidOptionError(f"level={level!r} must be one of {sorted(LEVELS)}")
    if isinstance(model, (str, os.PathLike)):  # external weights are read one at a time
        lazy = load_model_lazy(model, max_bytes=max_bytes)
        graph = build_graph(lazy.model, input_shapes, lazy.weights, dims)
        wanted = units if units is not None else unit_layers(lazy.model.graph, graph.constants)
        found = _units(lazy.model, input_shapes, dims, lazy.weights.read) if wanted else None
        return sparsity_report(graph, level=level, units=found)
    proto: onnx.ModelProto = load_model(model, max_bytes=max_bytes)
    graph = build_graph(proto, input_shapes, dims=dims)
    wanted = units if units is not None else unit_layers(proto.graph, graph.constants)
    found = _units(proto, input_shapes, dims) if wanted else None
    return sparsity_report(graph, level=level, units=found)


_SCORE_STEPS = 6
"""How far back from a Softmax ``unit_layers`` looks for the scores' MatMul (scale, mask,
bias, cast; BLOOM's scale, ALiBi bias, reshape to ``[B, H, T, T]`` and mask take five)."""


def unit_layers(graph: onnx.GraphProto, constants: ConstantResolver) -> bool:
    """Whether ``graph`` has attention or recurrent layers, whose units the layer table hides.

    Attention: ONNX Runtime's fused attention ops, or a Softmax over the product of two
    computed tensors (``Q K^T``; followed back ``_SCORE_STEPS`` nodes through scaling and
    masking). Recurrent: LSTM, GRU, RNN. It reads the node list only, so the models without
    them (CNNs, MLPs) do not pay for finding their units.

    Example:
        >>> from onnx import helper
        >>> g = helper.make_graph(
        ...     [helper.make_node("MatMul", ["q", "k"], ["s"]),
        ...      helper.make_node("Softmax", ["s"], ["p"])], "g", [], [])
        >>> unit_layers(g, ConstantResolver(g))
        True
    """
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        default = node.domain in ("", "ai.onnx")
        if (default and node.op_type in GATES) or (
            node.domain == "com.microsoft" and node.op_type in ATTENTION
        ):
            return True
        if default and node.op_type == "Softmax" and _scores(node, producers, constants):
            return True
    return False


def _scores(
    softmax: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto], constants: ConstantResolver
) -> bool:
    """Whether ``softmax`` reads a MatMul of two computed tensors, ``_SCORE_STEPS`` nodes back."""
    names = [softmax.input[0]] if softmax.input else []
    for _ in range(_SCORE_STEPS):
        nodes = [producers[n] for n in names if n in producers and constants.source(n) is None]
        if any(
            n.op_type == "MatMul" and all(constants.source(i) is None for i in n.input)
            for n in nodes
        ):
            return True
        names = [i for n in nodes for i in n.input if i]
    return False


def _units(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None,
    dims: Mapping[str, int] | None,
    read: Callable[[onnx.TensorProto], np.ndarray] | None = None,
) -> ModelUnits:
    """The structured units (heads, neurons, channels) and normalization layers of ``model``.

    Found on its structure: the large weights are not copied (``model.shapes_only``; ``read``
    reads the vectors left in external files), their figures are read by ``sparsity_report``.
    """
    # imported here: structured pruning imports the pruners, which import this module
    from onnxprune.structured.compact import Shapes, Workspace
    from onnxprune.structured.norms import norm_layers
    from onnxprune.structured.units import model_units

    ws = Workspace.of(shapes_only(model, read), Shapes(input_shapes, dims))
    norms = norm_layers(ws.model.graph, ws.arrays, ws.groups, ws.copies)
    return dataclasses.replace(model_units(ws.groups, ws.model.graph), norms=norms)


def sparsity_report(
    graph: ConnectivityGraph, *, level: str = "channel", units: ModelUnits | None = None
) -> SparsityReport:
    """The ``SparsityReport`` of an already built graph at ``level``.

    With ``units`` (``structured.units.model_units`` of the same model), the report has the
    sparsity of each structured unit too (``SparsityReport.blocks``).
    """
    uses: dict[str, list[Layer]] = {}
    for layer in graph.all_layers:
        uses.setdefault(layer.name, []).append(layer)
    shared = frozenset(name for name, layers in uses.items() if len(layers) > 1)
    held = _unit_layers(graph, units) if units is not None else {}
    counts = _UnitCounts(graph, units, held, shared) if units is not None else None
    masks_for = shared | {layer.name for layer in held.values()}
    activity = LEVELS[level](graph, masks_for=masks_for, keep=counts)
    cost = graph_macs(graph, {key: act.nonzero for key, act in activity.items()})
    by_use = {(node.node, node.weight): node for node in cost.nodes}
    fallbacks = list(graph.fallbacks)
    for body in graph.subgraphs():
        activity.update(_body_activity(body, level, shared))
        fallbacks += body.fallbacks
    readers = dict(graph.shared)
    for body in graph.subgraphs():
        readers.update(body.shared)
    rows = [
        _row(
            layers,
            [activity[use.key] for use in layers],
            [by_use[use.node, use.name] for use in layers if not use.scope],
            readers.get(layers[0].name, ()),
        )
        for layers in uses.values()
    ]
    blocks = () if counts is None else _blocks(graph, units, counts.rows)
    return SparsityReport(tuple(rows), level, tuple(fallbacks), cost, blocks)


def _unit_layers(graph: ConnectivityGraph, units: ModelUnits) -> dict[str, Layer]:
    """The layers of the main graph holding units, by the tensor they consume.

    That is the name the dependency groups give a weight: a folded chain's output, else the
    stored weight.
    """
    names = {s.name for s in units.groups.filters} | {c.weight for c in units.groups.consumers}
    held: dict[str, Layer] = {}
    for layer in graph.layers:
        if layer.weight in names:
            held.setdefault(layer.weight, layer)
    return held


class _UnitCounts:
    """Per unit layer, its units' entries, zero entries and active entries along each unit axis.

    Counted from each layer's activity mask as soon as the analysis makes it (a ``channel.Keep``),
    which then drops the mask unless the weight is shared (its table row needs it): the masks, a
    bool per weight, are never all held at once.
    """

    def __init__(
        self,
        graph: ConnectivityGraph,
        units: ModelUnits,
        held: Mapping[str, Layer],
        shared: frozenset[str],
    ) -> None:
        self._graph = graph
        self._shared = shared
        axes_of: dict[str, list[tuple[int, np.ndarray]]] = {}
        for name, axis, labels in _unit_axes(units):
            axes_of.setdefault(name, []).append((axis, labels))
        self._axes: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
        for name, axes in axes_of.items():
            layer = held.get(name)
            fitting = [] if layer is None else [a for a in axes if a[1].size == layer.shape[a[0]]]
            if fitting:
                self._axes[layer.key] = fitting
        self.rows: dict[tuple[str, int], list[tuple[np.ndarray, tuple]]] = {}
        """Per layer key: per unit axis, each entry's group and (entries, zeros, active)."""

    def __call__(self, layer: Layer, act: LayerActivity) -> LayerActivity:
        axes = self._axes.get(layer.key)
        if axes is not None:
            self.rows[layer.key] = _counted(self._graph, layer, act, axes)
        return act if layer.name in self._shared else dataclasses.replace(act, mask=None)


def _counted(
    graph: ConnectivityGraph,
    layer: Layer,
    act: LayerActivity,
    axes: list[tuple[int, np.ndarray]],
) -> list[tuple[np.ndarray, tuple]]:
    """Per unit axis of ``layer``: its labels and each unit's entries, zeros and active ones."""
    if act.active == act.nonzero:  # the active entries are the nonzero ones
        nonzero, pairs = act.mask, (_pair_counts(act.mask),) * 2
    else:
        nonzero = graph.weight(layer) != 0  # read once for all its axes
        pairs = _pair_counts(nonzero), _pair_counts(act.mask)
    out = []
    for axis, labels in axes:
        entries = nonzero.size // max(labels.size, 1)  # each unit's entries along the axis
        zeros = entries - _along(nonzero, pairs[0], axis)
        out.append((labels, (entries, zeros, _along(act.mask, pairs[1], axis))))
    return out


def _blocks(
    graph: ConnectivityGraph,
    units: ModelUnits,
    rows: Mapping[tuple[str, int], list[tuple[np.ndarray, tuple]]],
) -> tuple[BlockSparsity, ...]:
    """Per structured layer of ``units``: its units' weights, zero and active, and per head."""
    groups = units.groups
    sums = np.zeros((3, groups.count), np.int64)  # params, zeros, active per group
    for counted in rows.values():
        for labels, row in counted:
            for i, values in enumerate(row):
                weights = np.broadcast_to(values, labels.shape)
                sums[i] += np.bincount(labels, weights, groups.count).astype(np.int64)
    blocks = []
    for layer in units.layers:
        params, zeros, active = sums[:, layer.groups]
        dead = (params > 0) & (active == 0)
        heads = ()
        if layer.heads:
            starts = np.cumsum(layer.units) - layer.units
            heads = tuple(
                HeadSparsity(int(i), int(n), int(p), int(z), int(a))
                for i, n, p, z, a in zip(starts, layer.units, params, zeros, active, strict=True)
            )
        blocks.append(
            BlockSparsity(
                layer.module,
                layer.kind,
                layer.total,
                int(layer.units[dead].sum()),
                int(layer.units[groups.blocked[layer.groups]].sum()),
                int(params.sum()),
                int(zeros.sum()),
                int(active.sum()),
                (*layer.filters, *layer.readers),
                heads,
            )
        )
    norms = (_norm_block(norm, graph.constants.value(norm.scale)) for norm in units.norms)
    return (*blocks, *(block for block in norms if block is not None))


def _norm_block(norm: NormLayer, scale: np.ndarray | None) -> BlockSparsity | None:
    """A norm's channels: those with a zero ``scale`` are dead (they output a constant).

    None when the scale is not what the groups saw (not a stored constant of the main graph).
    """
    if scale is None or scale.size != norm.channels:
        return None
    size, zeros = norm.channels, int((scale == 0).sum())
    return BlockSparsity(
        norm.module,
        NORM_CHANNEL,
        size,
        zeros,
        norm.blocked,
        size,
        zeros,
        size - zeros,
        (norm.scale,),
    )


def _pair_counts(mask: np.ndarray) -> np.ndarray | None:
    """Set entries of a weight-shaped mask per pair of indices along axes 0 and 1, if 3-D+.

    Adding the slices of the other axes (``tap_counts``) is many times faster than reducing
    over strided axes; counts per index along axis 0 or 1 are then sums of these pairs.
    """
    return tap_counts(mask.astype(bool, copy=False)) if mask.ndim > 2 else None


def _along(mask: np.ndarray, pairs: np.ndarray | None, axis: int) -> np.ndarray:
    """Set entries of ``mask`` per index along ``axis`` (``pairs``: its ``_pair_counts``)."""
    axis %= mask.ndim
    if pairs is not None and axis < 2:
        return pairs.sum(axis=1 - axis, dtype=np.int64)
    return np.count_nonzero(mask, axis=tuple(a for a in range(mask.ndim) if a != axis))


def _unit_axes(units: ModelUnits) -> Iterator[tuple[str, int, np.ndarray]]:
    """Each weight holding units, once per axis: its name, the axis, each entry's group."""
    groups, seen = units.groups, set()
    found = [(s.name, s.axis, s.entries(groups.of(s.tensor))) for s in groups.filters]
    found += [(c.weight, c.in_axis, groups.inputs(c)) for c in groups.consumers]
    for name, axis, labels in found:
        if (name, axis) not in seen:
            seen.add((name, axis))
            yield name, axis, labels


def _body_activity(
    body: ConnectivityGraph, level: str, shared: frozenset[str]
) -> dict[tuple[str, int], LayerActivity]:
    """A body's layers analysed within the body; at channel level where exact needs shapes.

    A body's shapes depend on what runs before it (a loop's carried values may grow), which
    ``--input-shape`` cannot always fix; the channel level is the sound answer then.
    """
    try:
        return LEVELS[level](body, masks_for=shared)
    except ShapeError:
        return channel_reachability(body, masks_for=shared)


def _row(
    layers: list[Layer],
    acts: list[LayerActivity],
    macs: list[NodeMacs],
    readers: tuple[str, ...],
) -> LayerSparsity:
    first, act = layers[0], acts[0]
    params = int(np.prod(first.shape))
    in_body = any(layer.scope for layer in layers)  # a body runs 0, 1 or many times: MACs unknown
    active = act.active
    if len(layers) > 1:  # one stored tensor used by several layers: active if active anywhere
        stored = _to_stored(first, acts[0].mask)
        for layer, use in zip(layers[1:], acts[1:], strict=True):
            stored = stored | _to_stored(layer, use.mask)
        active = int(stored.sum())
    return LayerSparsity(
        first.name,
        first.op_type,
        first.shape,
        params,
        params - act.nonzero,
        active,
        act.dead_inputs,
        act.dead_outputs,
        None if in_body else total(m.macs for m in macs),
        None if in_body else total(m.nonzero_macs for m in macs),
        _gates(first, act) if len(layers) == 1 else (),
        None if first.label == first.name else first.label,
        tuple(readers),
    )


def _gates(layer: Layer, act: LayerActivity) -> tuple[GateSparsity, ...]:
    """Per gate of a recurrent weight: its rows' share of params, zeros and active weights."""
    if not act.gates:
        return ()
    per_gate = int(np.prod(layer.shape)) // len(act.gates)
    return tuple(
        GateSparsity(name, per_gate, per_gate - nonzero, active)
        for name, (nonzero, active) in zip(GATES[layer.op_type], act.gates, strict=True)
    )


def _to_stored(layer: Layer, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:  # pragma: no cover - masks are requested for every shared weight
        raise RuntimeError(f"no activity mask for shared weight {layer.name!r}")
    return layer.contract.source.to_stored(mask)
