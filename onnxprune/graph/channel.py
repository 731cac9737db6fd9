"""Channel-level reachability: units are channels and neurons, links are scipy.sparse matrices.

Forward from the graph inputs, backward from the graph outputs, with boolean vectors pushed
through each link. Exact for MLPs; for CNNs a channel counts as reached if any of its positions
is, so effective sparsity can only be under-reported, never over-reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from onnxprune.graph._bits import BitMatrix
from onnxprune.graph.build import ConnectivityGraph, Layer, Step
from onnxprune.graph.conv_geometry import conv_edges, tap_validity
from onnxprune.graph.recurrent import RecurrentLink, RecurrentUnits, hidden_axes, recurrent_links
from onnxprune.graph.registry import static
from onnxprune.graph.transfers import (
    Contract,
    Heads,
    Move,
    Pointwise,
    Recurrent,
    Reduce,
    Transfer,
    Window,
)

IDENTITY = "identity"
DENSE = "dense"


@dataclass(frozen=True)
class OneWay:
    """An in x out link whose forward and backward matrices differ (``transfers.Read``).

    Attention's values carry signal into its outputs (``forward``); its queries, keys and
    masks only weigh them, yet change the outputs (``backward``).
    """

    forward: sp.csr_matrix
    backward: sp.csr_matrix

    @staticmethod
    def of(carries: np.ndarray | None, steers: np.ndarray | None, shape: tuple[int, int]) -> OneWay:
        """The link of a ``Read``: nothing carried, or every unit steering, where ``None``."""
        forward = np.zeros(shape, bool) if carries is None else carries
        backward = np.ones(shape, bool) if steers is None else steers
        return OneWay(sp.csr_matrix(forward), sp.csr_matrix(backward))

    @property
    def shape(self) -> tuple[int, int]:
        """``(inputs, outputs)``."""
        return self.forward.shape

    def push(self, vec: np.ndarray) -> np.ndarray:
        """Output units reached from the input units ``vec``."""
        return (self.forward.T @ vec.astype(np.int64)) > 0

    def pull(self, vec: np.ndarray) -> np.ndarray:
        """Input units that can change any of the output units ``vec``."""
        return (self.backward @ vec.astype(np.int64)) > 0


Op = sp.csr_matrix | np.ndarray | BitMatrix | RecurrentLink | OneWay | str
"""A link between two unit vectors: an in x out matrix (scipy.sparse, a dense array of conv tap
counts, or a packed boolean pattern of a matmul or a one-tap convolution), a recurrent node's
units through time, a ``OneWay`` link, ``IDENTITY`` or ``DENSE``."""
Matrix = sp.csr_matrix | np.ndarray | BitMatrix
Edge = tuple[Matrix, np.ndarray, int]
"""A layer's in x out edge, the validity of its kernel taps, and its nonzero count."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Which axes of a tensor index its units, and how many units that makes."""

    axes: tuple[int, ...]
    size: int


@dataclass(frozen=True, slots=True)
class Link:
    """Units of ``src`` feed units of ``dst`` through ``ops``, applied in order.

    ``sizes`` are the vector lengths before and after each op (``len(ops) + 1`` of them).
    """

    src: str
    dst: str
    ops: tuple[Op, ...]
    sizes: tuple[int, ...]


def _link(src: str, dst: str, ops: Sequence[Op], layouts: dict[str, Layout]) -> Link:
    sizes = [layouts[src].size]
    for i, op in enumerate(ops):
        if not isinstance(op, str):
            sizes.append(op.shape[1])
        elif op == IDENTITY:
            sizes.append(sizes[-1])
        else:
            following = ops[i + 1] if i + 1 < len(ops) else None
            is_matrix = following is not None and not isinstance(following, str)
            sizes.append(following.shape[0] if is_matrix else layouts[dst].size)
    return Link(src, dst, tuple(ops), tuple(sizes))


@dataclass(frozen=True, slots=True)
class LayerActivity:
    """What reachability says about one use of a weight.

    Attributes:
        nonzero: number of nonzero weight entries.
        active: number of weight entries that lie on an input-to-output path.
        dead_inputs: input units of the layer that carry no active weight.
        dead_outputs: output units of the layer that receive no active weight.
        mask: active entries in the consumed weight's layout (only when asked for).
        gates: for the ``W`` and ``R`` of a recurrent layer, (nonzero, active) per gate.
    """

    nonzero: int
    active: int
    dead_inputs: int
    dead_outputs: int
    mask: np.ndarray | None = None
    gates: tuple[tuple[int, int], ...] = ()


Keep = Callable[[Layer, LayerActivity], LayerActivity]
"""What a caller does with a layer's activity mask (``masks_for``) as soon as the analysis makes
it, for the activity it keeps: e.g. count the mask per unit and drop it, so that the masks of a
large model are never all held at once."""


def kept(keep: Keep | None, layer: Layer, activity: LayerActivity) -> LayerActivity:
    """``keep(layer, activity)`` for an activity that carries a mask; else ``activity``."""
    return activity if keep is None or activity.mask is None else keep(layer, activity)


def channel_reachability(
    graph: ConnectivityGraph, masks_for: frozenset[str] = frozenset(), keep: Keep | None = None
) -> dict[tuple[str, int], LayerActivity]:
    """Activity of every layer at channel level, keyed by ``Layer.key``.

    Args:
        graph: the connectivity graph.
        masks_for: weight names whose element-wise active mask is wanted too (shared weights).
        keep: what to do with each such mask as soon as it is made (``Keep``).
    """
    return wired_reachability(graph, channel_wiring(graph), masks_for, keep=keep)


@dataclass(frozen=True, slots=True)
class Wiring:
    """A graph's links at channel level, in step order, and where its layers' edges sit.

    Attributes:
        links: every link, in the order of the graph's steps.
        layouts: the units of every tensor.
        layers: per layer node, the index of its link, its relayout op and its edge.
        recurrent: per recurrent node, its units and the links into it.
    """

    links: tuple[Link, ...]
    layouts: Mapping[str, Layout]
    layers: Mapping[str, tuple[int, Op, Edge]]
    recurrent: Mapping[str, tuple[RecurrentUnits, list[tuple[str, Op, RecurrentLink]]]]

    def with_edges(self, edges: Mapping[str, Edge]) -> Wiring:
        """The same links with the edges of some layers (by node) replaced, shapes unchanged."""
        links, layers = list(self.links), dict(self.layers)
        for node, edge in edges.items():
            index, relayout, _ = layers[node]
            old = links[index]
            links[index] = Link(old.src, old.dst, (relayout, edge[0]), old.sizes)
            layers[node] = (index, relayout, edge)
        return Wiring(tuple(links), self.layouts, layers, self.recurrent)


def channel_wiring(
    graph: ConnectivityGraph, layer_edges: Mapping[str, Edge] | None = None
) -> Wiring:
    """The links of ``graph`` at channel level (``wired_reachability`` runs the passes).

    Args:
        graph: the connectivity graph.
        layer_edges: the layers' edges (``layer_edge``) by node, in place of those of the graph's
            weights: a search that changes a few weights keeps them up to date and the links
            with them (``graph.incremental``) rather than rebuilding every one.
    """
    layouts = {t: default_layout(graph.shapes.get(t)) for t in graph.inputs}
    links: list[Link] = []
    layers: dict[str, tuple[int, Op, Edge]] = {}
    recurrent: dict[str, tuple[RecurrentUnits, list[tuple[str, Op, RecurrentLink]]]] = {}
    for step in graph.steps:
        for name in step.inputs:
            layouts.setdefault(name, default_layout(graph.shapes.get(name)))
        if step.recurrent:
            links += _recurrent_links(graph, step, layouts, recurrent)
            continue
        if step.layer is not None:
            known = None if layer_edges is None else layer_edges[step.node]
            relayout, edge = _layer_links(graph, step.layer, layouts, known)
            layers[step.node] = (len(links), relayout, edge)
            links.append(_link(step.layer.x, step.layer.y, (relayout, edge[0]), layouts))
            continue
        for out, transfer in zip(step.outputs, step.transfers, strict=False):
            if out:
                links += _step_links(graph, step, out, transfer, layouts)
    return Wiring(tuple(links), layouts, layers, recurrent)


def wired_reachability(
    graph: ConnectivityGraph,
    wiring: Wiring,
    masks_for: frozenset[str] = frozenset(),
    memo: dict | None = None,
    keep: Keep | None = None,
    passes: Passes | None = None,
) -> dict[tuple[str, int], LayerActivity]:
    """``channel_reachability`` over links already built (``channel_wiring``).

    Args:
        graph: the connectivity graph.
        wiring: its links.
        masks_for: layers (by weight name) whose active entries are wanted as a mask.
        memo: kept by a caller that runs the passes again and again on wiring that changes a
            few edges at a time: a layer whose edge (the same summary object) and alive units
            are unchanged since the last run keeps its activity rather than counting it again.
        keep: what to do with each mask of ``masks_for`` as soon as it is made (``Keep``).
        passes: the passes over ``wiring``'s links, kept up to date by such a caller.
    """
    layouts = wiring.layouts
    passes = passes or Passes(graph, wiring.links, layouts)
    forward, backward = passes.forward, passes.backward
    result = {}
    for step in graph.steps:
        if step.node in wiring.recurrent:
            units, sources = wiring.recurrent[step.node]
            alive = {
                link.source: _push(op, forward.get(name, np.zeros(layouts[name].size, bool)), size)
                for name, op, link in sources
                for size in link.shape[:1]
            }
            out = np.zeros(units.size, bool)
            for name in step.outputs:
                out |= backward.get(name, out) if name else out
            result.update(recurrent_activities(step, units, alive, out, masks_for, keep))
        if step.layer is None:
            continue
        _, relayout, summary = wiring.layers[step.node]
        edge, valid, nonzero = summary
        layer = step.layer
        reached = forward.get(layer.x, np.zeros(layouts[layer.x].size, bool))
        alive_in = _push(relayout, reached, edge.shape[0])
        alive_out = backward.get(layer.y, np.zeros(edge.shape[1], bool))
        if layer.name in masks_for:
            mask = _mask(graph, layer, alive_in, alive_out, valid)
            result[layer.key] = kept(
                keep, layer, _activity(nonzero, edge, alive_in, alive_out, mask)
            )
        else:
            result[layer.key] = _remembered(memo, layer.key, summary, alive_in, alive_out)
    return result


def _remembered(
    memo: dict | None,
    key: tuple[str, int],
    summary: Edge,
    alive_in: np.ndarray,
    alive_out: np.ndarray,
) -> LayerActivity:
    """A layer's activity, from ``memo`` when its edge and alive units are those it saw."""
    seen = None if memo is None else memo.get(key)
    if (
        seen is not None
        and seen[0] is summary
        and np.array_equal(seen[1], alive_in)
        and np.array_equal(seen[2], alive_out)
    ):
        return seen[3]
    activity = _activity(summary[2], summary[0], alive_in, alive_out, None)
    if memo is not None:
        memo[key] = (summary, alive_in, alive_out, activity)
    return activity


def _recurrent_links(
    graph: ConnectivityGraph,
    step: Step,
    layouts: dict[str, Layout],
    store: dict[str, tuple[RecurrentUnits, list[tuple[str, Op, RecurrentLink]]]],
) -> list[Link]:
    """Links from the input and initial states of an LSTM/GRU/RNN to each of its outputs."""
    spec: Recurrent = step.transfers[0]
    w_layer, r_layer = step.recurrent
    units = RecurrentUnits.of(spec, graph.weight(w_layer), graph.weight(r_layer))
    kinds = recurrent_links(units, w_layer.shape[-1])
    sources = []
    for name, kind, axes in (
        (spec.x, "x", (2,)),
        (spec.initial_h, "h0", hidden_axes(spec, 1)),
        (spec.initial_c, "c0", hidden_axes(spec, 1)),
    ):
        if name and name in step.inputs:
            relayout = _relayout(graph.shapes.get(name), layouts[name], axes)
            if isinstance(relayout, str) and layouts[name].size != kinds[kind].shape[0]:
                relayout = DENSE
            sources.append((name, relayout, kinds[kind]))
    store[step.node] = (units, sources)
    links = []
    for index, out in enumerate(step.outputs):
        if out:
            layouts[out] = Layout(hidden_axes(spec, min(index, 1)), units.size)
            links += [_link(n, out, (op, link), layouts) for n, op, link in sources]
    return links


def recurrent_activities(
    step: Step,
    units: RecurrentUnits,
    alive: dict[str, np.ndarray],
    out: np.ndarray,
    masks_for: frozenset[str],
    keep: Keep | None = None,
) -> dict[tuple[str, int], LayerActivity]:
    """Activity of the ``W`` and ``R`` layers of a recurrent step.

    Args:
        step: the step.
        units: its units.
        alive: what carries signal into it: input features (``"x"``), initial states
            (``"h0"``, ``"c0"``) as units; absent kinds carry none.
        out: [D * H] output units that reach a graph output.
        masks_for: weight names whose active mask is wanted.
        keep: what to do with each such mask as soon as it is made (``Keep``).
    """
    w_layer, r_layer = step.recurrent
    features = w_layer.shape[-1]
    x = alive.get("x", np.zeros(features, bool))
    live = units.forward(x, alive.get("h0"), alive.get("c0"))
    reaching = units.backward(out)
    result = {}
    for layer, weight, sources in ((w_layer, "w", x), (r_layer, "r", live)):
        active, gates = units.activity(weight, sources, reaching)
        d, gh, n = active.shape
        by_unit = active.reshape(d, len(units.spec.gates), gh // len(units.spec.gates), n)
        used_in = active.any(axis=(0, 1)) if weight == "w" else active.any(axis=1)
        activity = LayerActivity(
            int(units.w.sum() if weight == "w" else units.r.sum()),
            int(active.sum()),
            int((~used_in).sum()),
            int((~by_unit.any(axis=(1, 3))).sum()),
            active if layer.name in masks_for else None,
            tuple((int(a), int(b)) for a, b in gates),
        )
        result[layer.key] = kept(keep, layer, activity)
    return result


def default_layout(shape: Sequence[int | None] | None) -> Layout:
    """Units of a tensor we know nothing else about: axis 1 (channels/features) when static."""
    if shape is None or len(shape) == 0:
        return Layout((), 1)
    axis = 1 if len(shape) >= 2 else 0
    if shape[axis] is None:
        return Layout((), 1)
    return Layout((axis,), int(shape[axis]))


def unit_ids(shape: Sequence[int], axes: Sequence[int]) -> np.ndarray:
    """For every element of a tensor of ``shape``, the index of its unit under ``axes``."""
    ids = np.zeros(tuple(shape), dtype=np.int64)
    stride = 1
    for axis in reversed(axes):
        view = [1] * len(shape)
        view[axis] = shape[axis]
        ids = ids + np.arange(shape[axis], dtype=np.int64).reshape(view) * stride
        stride *= shape[axis]
    return ids


def _pairs(src: np.ndarray, dst: np.ndarray, n_src: int, n_dst: int) -> sp.csr_matrix:
    """Sparse n_src x n_dst matrix with a one wherever some element maps src unit -> dst unit."""
    keep = src >= 0
    codes = np.unique(src[keep].astype(np.int64) * n_dst + dst[keep])
    data = np.ones(codes.size, dtype=bool)
    return sp.csr_matrix((data, (codes // n_dst, codes % n_dst)), shape=(n_src, n_dst))


def _relayout(shape: Sequence[int | None] | None, src: Layout, axes: tuple[int, ...]) -> Op:
    if src.axes == axes:
        return IDENTITY
    full = static(shape)
    if full is None or src.size == 1:
        return DENSE
    dst_size = int(np.prod([full[a] for a in axes]))
    return _pairs(unit_ids(full, src.axes), unit_ids(full, axes), src.size, dst_size)


def _layer_links(
    graph: ConnectivityGraph, layer: Layer, layouts: dict[str, Layout], known: Edge | None
) -> tuple[Op, Edge]:
    c = layer.contract
    x_shape, y_shape = graph.shapes.get(layer.x), graph.shapes.get(layer.y)
    src = layouts[layer.x]
    summary = layer_edge(graph, layer) if known is None else known
    edge = summary[0]
    if c.kind == "matmul":
        x_rank = len(x_shape) if x_shape is not None else 2
        y_rank = len(y_shape) if y_shape is not None else x_rank
        x_axes, y_axes = (c.x_axis % x_rank,), (c.y_axis % y_rank,)
    else:
        x_axes, y_axes = (1,), (1,)
    layouts[layer.y] = Layout(y_axes, edge.shape[1])
    relayout = _relayout(x_shape, src, x_axes)
    if isinstance(relayout, str) and relayout == IDENTITY and src.size != edge.shape[0]:
        relayout = DENSE
    return relayout, summary


def layer_edge(graph: ConnectivityGraph, layer: Layer) -> Edge:
    """The layer's in x out edge, the validity of its kernel taps, and its nonzero count.

    The weight is materialized once, here; every pass then reads the edge, a compact summary:
    a matmul's or a one-tap convolution's pattern packed (1/32 of a float32 weight), other
    convolutions' tap counts per channel pair (at most 1/4 of the weight per tap). So a model
    whose weights are read one at a time from external files never holds more than one weight
    and these summaries.
    """
    c = layer.contract
    weight = graph.weight(layer)
    if c.kind == "matmul":  # packed in the stored layout (Gemm's transB: out x in)
        edge, nonzero = BitMatrix.nonzero(weight, transposed=c.w_transposed)
        return edge, np.ones((), bool), nonzero
    xs, ys = static(graph.shapes.get(layer.x)), static(graph.shapes.get(layer.y))
    valid = tap_validity(c, weight.shape[2:], xs and xs[2:], ys and ys[2:])
    if valid.size == 1 and c.group == 1:  # one tap: a matmul's pattern, packed from the weight
        edge, nonzero = BitMatrix.nonzero(
            weight.reshape(weight.shape[:2]),
            transposed=c.kind == "conv",  # conv: [O, C]
        )
        if not valid.all():  # the tap never meets real input
            edge = BitMatrix(np.zeros_like(edge.bits), edge.shape, edge.transposed)
        return edge, valid, nonzero
    pattern = weight != 0
    nonzero = int(np.count_nonzero(pattern))
    return conv_edges(c, pattern, valid), valid, nonzero


def _step_links(
    graph: ConnectivityGraph, step: Step, out: str, t: Transfer, layouts: dict[str, Layout]
) -> list[Link]:
    shape = graph.shapes.get(out)
    ins = [(name, layouts[name]) for name in step.inputs]
    if isinstance(t, Move):
        return _move_links(graph, ins, out, t, layouts)
    if isinstance(t, Pointwise):
        return _pointwise_links(graph, ins, out, layouts)
    if isinstance(t, Heads):
        return _heads_links(graph, ins, out, t, layouts)
    return _mixing_links(ins, out, shape, t, layouts)


def _heads_links(
    graph: ConnectivityGraph,
    ins: list[tuple[str, Layout]],
    out: str,
    t: Heads,
    layouts: dict[str, Layout],
) -> list[Link]:
    """Attention's inputs to its output channels (the last axis).

    The first ``len(t.reads)`` inputs are read as their ``Read`` says, the others densely.
    """
    shape = graph.shapes.get(out)
    layouts[out] = Layout((len(shape) - 1 if shape else 2,), t.units)
    links = []
    for index, (name, lay) in enumerate(ins):
        read = t.reads[index] if index < len(t.reads) else None
        if read is None:
            ops: tuple[Op, ...] = (DENSE,)
        elif read.carries is None and read.steers is None:  # a mask: every unit steers
            ops = (OneWay.of(None, None, (lay.size, t.units)),)
        else:
            matrix = read.steers if read.steers is not None else read.carries
            in_shape = graph.shapes.get(name)
            relayout = _relayout(in_shape, lay, (len(in_shape) - 1,) if in_shape else (2,))
            if isinstance(relayout, str) and lay.size != matrix.shape[0]:
                relayout = DENSE
            ops = (relayout, OneWay.of(read.carries, read.steers, matrix.shape))
        links.append(_link(name, out, ops, layouts))
    return links


def _mixing_links(
    ins: list[tuple[str, Layout]],
    out: str,
    shape: Sequence[int | None] | None,
    t: Transfer,
    layouts: dict[str, Layout],
) -> list[Link]:
    if isinstance(t, (Window, Reduce)) and ins:
        name, lay = ins[0]
        touched = set(t.axes) & set(lay.axes)
        if not touched:
            axes = lay.axes
            if isinstance(t, Reduce) and not t.keepdims:
                axes = tuple(a - sum(r < a for r in t.axes) for a in lay.axes)
            layouts[out] = Layout(axes, lay.size)
            return [_link(name, out, (IDENTITY,), layouts)]
        if isinstance(t, Window) and len(t.axes) == 1 and lay.axes == t.axes:
            layouts[out] = lay
            return [_link(name, out, (_band(t, lay.size),), layouts)]
        if isinstance(t, Reduce) and t.keepdims and set(lay.axes) <= set(t.axes):
            layouts[out] = Layout(lay.axes, _size(shape, lay.axes) or lay.size)
            return [_link(name, out, (DENSE,), layouts)]
    layouts[out] = default_layout(shape)
    return [_link(name, out, (DENSE,), layouts) for name, _ in ins]


def _size(shape: Sequence[int | None] | None, axes: Sequence[int]) -> int | None:
    if shape is None or any(shape[a] is None for a in axes):
        return None
    return int(np.prod([shape[a] for a in axes]))


def _band(t: Window, n: int) -> sp.csr_matrix:
    """A 1-D window over the unit axis (LRN): output unit o reads units o*s + k*d - pad."""
    out = np.arange(n)[:, None]
    src = out * t.strides[0] + np.arange(t.kernel[0])[None, :] * t.dilations[0] - t.pads[0]
    ok = (src >= 0) & (src < n)
    dst = np.broadcast_to(out, src.shape)
    return _pairs(np.where(ok, src, -1), dst, n, n)


def _pointwise_links(
    graph: ConnectivityGraph, ins: list[tuple[str, Layout]], out: str, layouts: dict[str, Layout]
) -> list[Link]:
    out_shape = graph.shapes.get(out)
    rank = len(out_shape) if out_shape is not None else None
    best: Layout | None = None
    for name, lay in ins:
        in_shape = graph.shapes.get(name)
        if rank is not None and in_shape is not None and lay.axes:
            shifted = tuple(a + rank - len(in_shape) for a in lay.axes)
            if best is None or lay.size > best.size:
                best = Layout(shifted, _size(out_shape, shifted) or lay.size)
    target = best or default_layout(out_shape)
    layouts[out] = target
    links = []
    for name, lay in ins:
        in_shape = graph.shapes.get(name)
        shift = (rank - len(in_shape)) if rank is not None and in_shape is not None else 0
        if tuple(a + shift for a in lay.axes) == target.axes and lay.size == target.size:
            op: Op = IDENTITY
        else:
            op = _broadcast_op(in_shape, out_shape, lay, target)
        links.append(_link(name, out, (op,), layouts))
    return links


def _broadcast_op(in_shape, out_shape, lay: Layout, target: Layout) -> Op:
    full_in, full_out = static(in_shape), static(out_shape)
    if full_in is None or full_out is None or lay.size == 1:
        return DENSE
    src = np.broadcast_to(
        unit_ids(full_in, lay.axes).reshape((1,) * (len(full_out) - len(full_in)) + full_in),
        full_out,
    )
    return _pairs(src, unit_ids(full_out, target.axes), lay.size, target.size)


def _move_links(
    graph: ConnectivityGraph,
    ins: list[tuple[str, Layout]],
    out: str,
    t: Move,
    layouts: dict[str, Layout],
) -> list[Link]:
    parts, offsets, offset = [], [], 0
    for name, lay in ins:
        full = graph.static_shape(name)
        # An input without a static shape is never referenced by ``t.ids`` (see rules/movement).
        part = np.zeros(0, np.int64) if full is None else unit_ids(full, lay.axes).reshape(-1)
        parts.append(part + offset)
        offsets.append(offset)
        offset += lay.size
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    units = np.where(t.ids >= 0, flat[np.maximum(t.ids, 0)], -1) if flat.size else t.ids
    axes = tuple(a for a in range(1, units.ndim) if np.any(np.diff(units, axis=a) != 0))
    size = int(np.prod([units.shape[a] for a in axes]))
    layouts[out] = Layout(axes, size)
    dst = unit_ids(units.shape, axes)
    links = []
    for (name, lay), start in zip(ins, offsets, strict=True):
        inside = (units >= start) & (units < start + lay.size)
        src = np.where(inside, units - start, -1)
        links.append(_link(name, out, (_pairs(src, dst, lay.size, size),), layouts))
    return links


class Passes:
    """The forward and backward passes over a wiring's links, each link's part kept.

    ``forward``: per tensor, its units reached from the graph inputs; ``backward``: those that
    reach a graph output. A tensor's reach folds the parts of the links into it (forward) or out
    of it (backward), in link order, as the passes meet them. After some links change
    (``update``), only those links and the links whose source (forward) or destination
    (backward) reach changed are pushed again: an effective target's search, which changes a
    few weights a step, rarely changes a whole unit, so a step pushes a handful of links.
    """

    def __init__(
        self, graph: ConnectivityGraph, links: Sequence[Link], layouts: Mapping[str, Layout]
    ) -> None:
        """Both passes over ``links`` (in step order) of ``graph``."""
        self._links = list(links)
        self._into: dict[str, list[int]] = {}
        self._out_of: dict[str, list[int]] = {}
        for i, link in enumerate(self._links):
            self._into.setdefault(link.dst, []).append(i)
            self._out_of.setdefault(link.src, []).append(i)
        self._starts = {t: np.ones(layouts[t].size, bool) for t in graph.inputs}
        self._ends = {
            t: np.ones(layouts.get(t, default_layout(graph.shapes.get(t))).size, bool)
            for t in graph.outputs
        }
        self._sent: list[np.ndarray | None] = [None] * len(self._links)
        self._pulled: list[np.ndarray | None] = [None] * len(self._links)
        self.forward: dict[str, np.ndarray] = dict(self._starts)
        self.backward: dict[str, np.ndarray] = dict(self._ends)
        self.update(self._links, range(len(self._links)))

    def update(self, links: Sequence[Link], changed: Iterable[int]) -> None:
        """Take ``links`` (the same tensors, new ops at ``changed``) and redo what they reach."""
        self._links = list(links)
        changed = set(changed)
        if changed:
            self._run_forward(changed)
            self._run_backward(changed)

    def _run_forward(self, changed: set[int]) -> None:
        moved: set[str] = set()  # tensors whose reach changed
        pending: set[str] = set()  # tensors a part of which changed: folded at their last link
        for i in range(min(changed), len(self._links)):
            link = self._links[i]
            if i in changed or link.src in moved:
                vec = self.forward.get(link.src)
                if vec is not None and vec.any():
                    for op, size in zip(link.ops, link.sizes[1:], strict=True):
                        vec = _push(op, vec, size)
                else:
                    vec = None
                if not _same(vec, self._sent[i]):
                    self._sent[i] = vec
                    pending.add(link.dst)
            into = self._into[link.dst]
            if into[-1] == i and link.dst in pending:
                reach = _fold(self._starts.get(link.dst), (self._sent[j] for j in into))
                if not _same(reach, self.forward.get(link.dst)):
                    _store(self.forward, link.dst, reach)
                    moved.add(link.dst)

    def _run_backward(self, changed: set[int]) -> None:
        moved: set[str] = set()
        pending: set[str] = set()
        for i in range(max(changed), -1, -1):
            link = self._links[i]
            if i in changed or link.dst in moved:
                vec = self.backward.get(link.dst)
                if vec is not None and vec.any():
                    for op, size in zip(reversed(link.ops), reversed(link.sizes[:-1]), strict=True):
                        vec = _pull(op, vec, size)
                else:
                    vec = None
                if not _same(vec, self._pulled[i]):
                    self._pulled[i] = vec
                    pending.add(link.src)
            out_of = self._out_of[link.src]
            if out_of[0] == i and link.src in pending:
                parts = (self._pulled[j] for j in reversed(out_of))
                reach = _fold(self._ends.get(link.src), parts)
                if not _same(reach, self.backward.get(link.src)):
                    _store(self.backward, link.src, reach)
                    moved.add(link.src)


def _fold(start: np.ndarray | None, parts: Iterable[np.ndarray | None]) -> np.ndarray | None:
    """A tensor's reach: ``start``, then each part or-ed in (a part of another size replaces it)."""
    reach = start
    for vec in parts:
        if vec is not None:
            reach = vec if reach is None or reach.size != vec.size else reach | vec
    return reach


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.size == b.size and bool(np.array_equal(a, b))


def _store(reach: dict[str, np.ndarray], name: str, vec: np.ndarray | None) -> None:
    if vec is None:
        reach.pop(name, None)
    else:
        reach[name] = vec


def _push(op: Op, vec: np.ndarray, size: int) -> np.ndarray:
    if isinstance(op, (BitMatrix, RecurrentLink, OneWay)):
        return op.push(vec)
    if isinstance(op, np.ndarray):
        return (op if vec.all() else op[vec]).any(axis=0)
    if isinstance(op, sp.csr_matrix):
        return (op.T @ vec.astype(np.int64)) > 0
    if op == IDENTITY:
        return vec
    return np.full(size, bool(vec.any()))


def _pull(op: Op, vec: np.ndarray, size: int) -> np.ndarray:
    if isinstance(op, (BitMatrix, RecurrentLink, OneWay)):
        return op.pull(vec)
    if isinstance(op, np.ndarray):
        return (op if vec.all() else op[:, vec]).any(axis=1)
    if isinstance(op, sp.csr_matrix):
        return (op @ vec.astype(np.int64)) > 0
    if op == IDENTITY:
        return vec
    return np.full(size, bool(vec.any()))


def _activity(
    nonzero: int,
    edge: Matrix,
    alive_in: np.ndarray,
    alive_out: np.ndarray,
    mask: np.ndarray | None,
) -> LayerActivity:
    if isinstance(edge, BitMatrix):  # a matmul's or a one-tap convolution's pattern
        active, used_in, used_out = edge.activity(alive_in, alive_out)
        return LayerActivity(nonzero, active, int((~used_in).sum()), int((~used_out).sum()), mask)
    used_in = np.zeros(edge.shape[0], bool)
    used_out = np.zeros(edge.shape[1], bool)
    if isinstance(edge, np.ndarray):  # tap counts (conv)
        everything = alive_in.all() and alive_out.all()
        live = edge if everything else edge[alive_in][:, alive_out]
        active = int(np.count_nonzero(live) if live.dtype == bool else live.sum(dtype=np.int64))
        used_in[alive_in] = live.any(axis=1)
        used_out[alive_out] = live.any(axis=0)
    else:  # a grouped convolution's channel pairs, with their counts of nonzero valid taps
        coo = edge.tocoo()
        keep = alive_in[coo.row] & alive_out[coo.col]
        active = int(coo.data[keep].sum())
        used_in[coo.row[keep]] = True
        used_out[coo.col[keep]] = True
    return LayerActivity(nonzero, active, int((~used_in).sum()), int((~used_out).sum()), mask)


def _mask(
    graph: ConnectivityGraph,
    layer: Layer,
    alive_in: np.ndarray,
    alive_out: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    c: Contract = layer.contract
    weight = graph.weight(layer)
    nonzero = weight != 0
    if alive_in.all() and alive_out.all() and valid.all():  # every nonzero entry is active
        return nonzero
    if c.kind == "matmul":
        rows, cols = (alive_out, alive_in) if c.w_transposed else (alive_in, alive_out)
        return nonzero & rows[:, None] & cols[None, :]
    a, b = weight.shape[:2]
    g = c.group
    first = np.arange(a)
    if c.kind == "conv":  # [O, C/G]: out unit = first, in unit = group * b + second
        in_units = (first[:, None] // (a // g)) * b + np.arange(b)[None, :]
        pair = alive_out[first][:, None] & alive_in[in_units]
    else:
        out_units = (first[:, None] // (a // g)) * b + np.arange(b)[None, :]
        pair = alive_in[first][:, None] & alive_out[out_units]
    extra = (1,) * (weight.ndim - 2)
    return nonzero & valid & pair.reshape(pair.shape + extra)
