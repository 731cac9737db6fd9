"""Compaction: remove every dead unit from the ONNX graph, keeping the outputs.

A dependency group (``groups``) is dead when no consumer reads it (every weight on its units is
zero) or when its units hold a constant (no nonzero incoming weight anywhere in the group, only
biases, through activations, BatchNormalization, residual sums and the like): that constant is
folded into the biases of the layers reading it, so the outputs do not change. Into a padded Conv
the constant's contribution varies near the borders (the taps in the padding add nothing): it is
folded as a fixed map over the output positions, added after the Conv (static spatial shapes
needed), when the parameters the removal frees pay for the kernel that map stores (compaction never
grows a model; otherwise the units stay). Where the constant cannot be folded exactly (padded
averaging, a transposed conv, unknown shapes) the group is removed only when its constant is
exactly zero. Removing units can leave units upstream unread and units downstream constant, so this
repeats to a fixed point before the graph is cut once. Blocked groups (graph outputs, ops the
handlers do not know, shared weights) stay, and so does at least one unit of every tensor. Nested
groups (query heads within their K/V head, ``nests``) go only as a nest allows: a parent with all
of its children, children in equal numbers per parent left (some dead ones may stay). A dead
filter of one member of a residual sum stays when another member keeps that channel alive: ONNX has
no cheap way to add into a subset of channels.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.bodies import subgraphs
from onnxprune.graph.build import build_graph
from onnxprune.graph.shapes import fix_input_shapes, infer_shapes_and_values, static_inputs
from onnxprune.macs import MacCount, graph_macs
from onnxprune.model_checks import all_tensors
from onnxprune.structured._constants import fold_known, input_free, materialize
from onnxprune.structured._copies import merge_copies, separable, stored_twice, unshare
from onnxprune.structured.blocked import BlockedGroup, blocked_groups, body_blocks
from onnxprune.structured.groups import Arrays, Consts, Consumer, Folded, Groups, build_groups
from onnxprune.structured.infos import inferred_infos
from onnxprune.structured.nests import respect
from onnxprune.structured.surgery import cut, fold, foldable, read, zero
from onnxprune.structured.units import ModelUnits, kind_totals, model_units
from onnxprune.weights import ConstantResolver, attr, weight_readers


@dataclass(frozen=True)
class CompactResult:
    """A compacted model and what was removed.

    Attributes:
        model: the smaller model (a new proto; the input is not changed). When nothing is
            removed (``removed`` empty), a copy of the input as it came, not rewritten in any
            way (constant nodes, stored shapes and input shapes as they were).
        removed: units removed per layer, keyed by its weight name.
        folded: of those, units whose constant output was folded into the next layer's bias.
        params_before: number of weight elements before (constant nodes included).
        params_after: number of initializer elements after. Both count the numbers stored in
            ``If``/``Loop``/``Scan`` bodies too, which compaction leaves as they are.
        blocked: the groups of the input model that had to stay whole, and why.
        macs_before: the MACs of the input model (``onnxprune.macs``; per sample when the
            batch is symbolic).
        macs_after: the MACs of the compacted model.
        units: per layer of ``removed``, (kept, total) units counted in its kind of unit
            (``kinds``): an attention projection's heads, not its channels.
        kinds: per layer of ``removed``, what its units are (``structured.units.KINDS``).
        labels: a readable name (the exporter's module, else the node's name) per weight of
            ``removed`` and ``blocked`` whose name is not already readable.
        totals: per kind, (kept, total) units of the structured layers with a unit free to go
            (``heads 8 -> 6``).
    """

    model: onnx.ModelProto
    removed: dict[str, int] = field(default_factory=dict)
    folded: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    blocked: tuple[BlockedGroup, ...] = ()
    macs_before: MacCount = field(default_factory=MacCount)
    macs_after: MacCount = field(default_factory=MacCount)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form: units removed (and folded) per layer, parameters, MACs, blocked groups.

        Also each layer's units in its kind (``units``, ``kinds``), ``labels`` and ``totals``.
        """
        return {
            "removed": dict(self.removed),
            "folded": dict(self.folded),
            "units": {name: list(kept_total) for name, kept_total in self.units.items()},
            "kinds": dict(self.kinds),
            "labels": dict(self.labels),
            "totals": {kind: list(kept_total) for kind, kept_total in self.totals.items()},
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before.macs,
            "macs_after": self.macs_after.macs,
            "nonzero_macs_before": self.macs_before.nonzero_macs,
            "nonzero_macs_after": self.macs_after.nonzero_macs,
            "blocked": [group.to_dict() for group in self.blocked],
        }


@dataclass(frozen=True)
class Shapes:
    """Sizes the caller fixes for symbolic input dimensions (``graph.shapes.infer_shapes``)."""

    inputs: Mapping[str, Sequence[int]] | None = None
    dims: Mapping[str, int] | None = None


@dataclass
class Workspace:
    """A model copy being cut: its initializers as arrays and its dependency groups.

    ``copies``: the initializers holding a parameter vector the exporter stored once for several
    layers, each layer's copy (``_copies.unshare``): the stored name each comes from.
    """

    model: onnx.ModelProto
    arrays: dict[str, np.ndarray]
    groups: Groups
    params: int
    shapes: Shapes = field(default_factory=Shapes)
    copies: dict[str, str] = field(default_factory=dict)
    in_bodies: int = 0
    """Numbers stored inside ``If``/``Loop``/``Scan`` bodies (in ``params``; never cut)."""
    source: onnx.ModelProto | None = None
    """The model as it came (not copied), returned as it is when nothing is removed."""
    folded: int = 0
    """Computed shape tensors stored as constants, right for the fixed input shapes only (the
    constants no input's size feeds, folded when sizes stay symbolic, are not counted)."""

    @classmethod
    def of(cls, model: onnx.ModelProto, shapes: Shapes | None = None) -> Workspace:
        """A deep copy of ``model`` with constant-node weights made initializers.

        A weight that several nodes read through chains (a layer TorchScript deduplicated
        through ``Identity``) keeps its chains, and none of its readers may slice it; a shared
        parameter vector (an exporter's one zero bias for many layers) is copied for each
        reader instead (``_copies``), and equal matrices, one parameter the exporter stored once
        per use, are shared (``_copies.stored_twice``). ``params`` counts what the model stores,
        each once.
        """
        constants = ConstantResolver(model.graph)
        shared = _shared(model.graph, constants)
        vectors = separable(model.graph, constants)
        work = copy.deepcopy(model)
        chains = {  # Identity, Cast, Transpose... of a shared weight (Constant nodes fold)
            n.output[0]
            for n in work.graph.node
            if n.output
            and n.output[0] in shared
            and n.op_type not in _STORED
            and constants.source(n.output[0]).name not in vectors
        }
        materialize(work, keep=chains)
        copies = unshare(work, vectors)
        params = sum(math.prod(t.dims) for t in work.graph.initializer if t.name not in copies)
        params += sum(math.prod(constants.shape(name)) for name in vectors)
        in_bodies = sum(
            math.prod(t.dims)
            for node in model.graph.node
            for body in subgraphs(node)
            for t in all_tensors(body)
        )
        opset = next((o.version for o in work.opset_import if o.domain in ("", "ai.onnx")), 1)
        shapes = shapes or Shapes()
        inferred, values = infer_shapes_and_values(work, shapes.inputs, shapes.dims)
        # fixed sizes: the cut model declares them (ONNX Runtime refuses others) and may rely on
        # them; with symbolic sizes left, only what no input's size feeds holds for every size.
        # Shapes, indices and counts are scalars and vectors; a table computed from constants
        # (DeBERTa's relative positions, [B*H, T, T]) stays computed: stored, it grew the model
        fixed = shapes.inputs or shapes.dims or static_inputs(work.graph)
        free = set() if fixed else input_free(work.graph)
        known = {
            k: v
            for k, v in values.items()
            if v.dtype.kind in "iu" and v.ndim <= 1 and (fixed or k in free)
        }
        folded = fold_known(work, known)
        if folded:  # a folded Reshape target can show inference what an output mis-declares
            inferred_infos(work)
        arrays = {t.name: _array(t) for t in work.graph.initializer}
        left = _shared(work.graph, ConstantResolver(work.graph)) | stored_twice(work.graph, arrays)
        groups = build_groups(work.graph, arrays, inferred, opset, left)
        return cls(
            work,
            arrays,
            groups,
            int(params + in_bodies),
            shapes,
            copies,
            in_bodies,
            model,
            folded if fixed else 0,
        )


def _array(tensor: onnx.TensorProto) -> np.ndarray:
    """An initializer's value; one left in its external file stands in as zeros of its shape.

    Only ``analyze`` passes such a model (loaded lazily, for the names and counts of its units):
    building the groups reads the shapes of the weights, the stand-in takes no memory, and
    nothing is cut from it.
    """
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    return np.broadcast_to(np.zeros((), dtype), tuple(tensor.dims))


def _shared(graph: onnx.GraphProto, constants: ConstantResolver) -> dict[str, tuple[str, ...]]:
    """Every tensor the nodes read whose stored weight more than one node reads: the readers."""
    readers = weight_readers(graph, constants)
    shared = {}
    for node in graph.node:
        for name in node.input:
            source = constants.source(name) if name else None
            if source is not None and len(readers.get(source.name, ())) > 1:
                shared[name] = readers[source.name]
    return shared


_STORED = frozenset({"Constant", "ConstantOfShape"})
"""Nodes that store a weight rather than compute it from another (they fold as initializers)."""


def compact(
    model: onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> CompactResult:
    """Remove every dead unit of ``model`` (see the module docstring).

    Args:
        model: an ONNX model with its weights loaded (initializers or constant nodes).
        input_shapes: fixed shapes for inputs with symbolic dimensions (a constant folded
            into a padded Conv needs static sizes); the result declares them as its inputs'
            shapes, since it may compute right for those sizes only.
        dims: sizes of symbolic dimensions by name, e.g. ``{"batch": 1, "sequence": 128}``.

    Returns:
        A ``CompactResult``; its model keeps the IR version and opsets of ``model``.

    Example:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> import numpy as np
        >>> w1 = numpy_helper.from_array(np.array([[1, 0], [0, 0]], np.float32), "w1")
        >>> w2 = numpy_helper.from_array(np.ones((2, 1), np.float32), "w2")
        >>> g = helper.make_graph(
        ...     [helper.make_node("MatMul", ["x", "w1"], ["h"]),
        ...      helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w1, w2])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> r = compact(m)
        >>> r.removed, r.params_before, r.params_after
        ({'w1': 1}, 6, 3)
    """
    return compact_workspace(Workspace.of(model, Shapes(input_shapes, dims)))


def compact_workspace(ws: Workspace) -> CompactResult:
    """Compact the model of ``ws`` (its arrays may already hold zeroed units) to a fixed point.

    A cut can change how units are tied (a grouped Conv left with one input channel per group is
    depthwise; a depthwise Conv left with one channel is a plain one), which can free units the
    pass had to keep: the groups are built again on the result until a pass removes nothing.
    When the first pass removes nothing, the result is the input model as it came.
    """
    grouped = any(n.op_type == "Conv" and attr(n, "group", 1) > 1 for n in ws.model.graph.node)
    before = _macs(ws.model, ws.shapes)  # before the cut, which changes ws.model in place
    passes = [_compact_once(ws)]
    result = passes[0].result
    if not result.removed:
        model = copy.deepcopy(ws.source or ws.model)
        result = replace(result, model=model, macs_before=before, macs_after=before)
        return _in_units(result, passes)
    while grouped:
        again = _compact_once(Workspace.of(result.model, ws.shapes))
        if not again.result.removed:
            break
        passes.append(again)
        result = CompactResult(
            again.result.model,
            dict(Counter(result.removed) + Counter(again.result.removed)),
            dict(Counter(result.folded) + Counter(again.result.folded)),
            result.params_before,
            again.result.params_after,
            result.blocked,
        )
    after = _macs(result.model, ws.shapes)
    if ws.shapes.inputs or ws.shapes.dims:
        fix_input_shapes(result.model, ws.shapes.inputs, ws.shapes.dims)
    return _in_units(replace(result, macs_before=before, macs_after=after), passes)


@dataclass(frozen=True)
class _Pass:
    """One pass of compaction: what it cut, the units of the model it cut, its groups gone."""

    result: CompactResult
    named: ModelUnits
    gone: np.ndarray


def _in_units(result: CompactResult, passes: Sequence[_Pass]) -> CompactResult:
    """``result`` with what its passes removed counted in each layer's kind of unit, labelled.

    A layer keeps the total of the first pass and the units left by the last; the totals are
    over the first pass's structured layers, less what the later passes (grouped Convs: one
    channel a unit) removed from their first filters.
    """
    units: dict[str, tuple[int, int]] = {}
    kinds: dict[str, str] = {}
    later: Counter[str] = Counter()
    for index, done in enumerate(passes):
        for name in done.result.removed:
            kept, total = done.named.kept(name, done.gone)
            units[name] = (kept, units.get(name, (kept, total))[1])
            kinds.setdefault(name, done.named.kind_of(name) or "unit")
            later[name] += (total - kept) if index else 0
    first = passes[0]
    layers = first.named.layer_counts(first.gone, first.named.groups.blocked)
    counts = ((kind, kept - later[key[0]], total) for key, (kind, kept, total) in layers.items())
    labels = first.named.readable([*units, *(n for b in result.blocked for n in b.layers)])
    return replace(result, units=units, kinds=kinds, labels=labels, totals=kind_totals(counts))


def _macs(model: onnx.ModelProto, shapes: Shapes) -> MacCount:
    """The MACs of ``model`` (a loaded proto: no second load or size check)."""
    return graph_macs(build_graph(model, shapes.inputs, dims=shapes.dims))


def _compact_once(ws: Workspace) -> _Pass:
    """One pass: cut ``ws.model`` in place (nothing removed: not cut, the model as it is)."""
    groups, arrays = ws.groups, ws.arrays
    gone = np.zeros(groups.count, bool)
    folded = np.zeros(groups.count, bool)
    pending: dict[str, Folded] = {}
    while True:
        consts = groups.constants(arrays, pending)
        reads = read(groups, arrays)
        dead = ~reads | foldable(groups, consts, arrays)
        new = respect(groups.nests, dead & ~groups.blocked & ~gone, gone)  # parents first
        new = _keep_one(groups, new, gone)
        new = _affordable(groups, new & reads, consts, arrays, pending) | (new & ~reads)
        new = respect(groups.nests, new, gone)
        if not new.any():
            break
        folded |= fold(groups, new & reads, consts, arrays, pending)
        zero(groups, new, arrays)
        gone |= new
    removed, folds = {}, {}
    for s in groups.filters:
        labels = groups.of(s.tensor)
        if gone[labels].any():
            removed[s.name] = int(gone[labels].sum())
        if folded[labels].any():
            folds[s.name] = int(folded[labels].sum())
    named = model_units(groups, ws.model.graph)  # before the cut renames its tensors
    if not removed:
        blocked = blocked_groups(groups) + body_blocks(ws.model)
        return _Pass(CompactResult(ws.model, {}, {}, ws.params, ws.params, blocked), named, gone)
    cut(ws.model, groups, gone, arrays, pending)
    for name in merge_copies(ws.model, ws.copies):
        del arrays[name]
    after = sum(t.size for t in arrays.values()) + ws.in_bodies
    blocked = blocked_groups(groups) + body_blocks(ws.model)
    result = CompactResult(ws.model, removed, folds, ws.params, int(after), blocked)
    return _Pass(result, named, gone)


def _affordable(
    groups: Groups, chosen: np.ndarray, consts: Consts, arrays: Arrays, pending: dict[str, Folded]
) -> np.ndarray:
    """``chosen`` less the groups whose folds into padded Convs would grow the model.

    Such a fold stores a kernel and a shape once per Conv (``surgery.fold``): the parameters
    the groups folded into padded Convs free must pay for all of them. While they do not, the
    groups folded into the Conv that pays worst are kept.
    """
    freed = _freed(groups, arrays)
    chosen = chosen.copy()
    while True:
        maps = [(c, _folded_into(groups, c, chosen, consts, pending)) for c in groups.consumers]
        maps = [(c, into) for c, into in maps if into.any()]
        if not maps:
            return chosen
        into_any = np.logical_or.reduce([into for _, into in maps])
        costs = [_map_cost(c, arrays, groups.opset) for c, _ in maps]
        if freed[into_any].sum() >= sum(costs):
            return chosen
        worst = min(range(len(maps)), key=lambda k: freed[maps[k][1]].sum() - costs[k])
        chosen &= ~maps[worst][1]


def _folded_into(
    groups: Groups, c: Consumer, chosen: np.ndarray, consts: Consts, pending: dict[str, Folded]
) -> np.ndarray:
    """Per group: ``chosen``, and its constant would give padded Conv ``c`` a new folded map."""
    into = np.zeros(groups.count, bool)
    f = pending.get(c.node.output[0])
    if c.window is None or not c.foldable or (f is not None and f.kernel is not None):
        return into
    labels = groups.of(c.tensor)
    into[labels[chosen[labels] & (np.nan_to_num(consts[c.tensor]) != 0)]] = True
    return into


def _map_cost(c: Consumer, arrays: Arrays, opset: int) -> int:
    """Parameters a padded Conv's folded map adds.

    Its kernel, and the shape of the 1s it runs over (the 1s themselves before opset 9, which
    has no ``ConstantOfShape``).
    """
    w = arrays[c.weight]
    sizes = c.window.sizes_in
    ones = len(sizes) + 2 if opset >= 9 else int(np.prod(sizes))
    return w.shape[c.out_axis] * int(np.prod(w.shape[2:])) + ones


def _freed(groups: Groups, arrays: Arrays) -> np.ndarray:
    """Per group: the initializer elements that removing one of its units takes away."""
    freed = np.zeros(groups.count, np.int64)
    for s in groups.slices:
        a = arrays[s.name]
        np.add.at(freed, groups.of(s.tensor), a.size * s.tile // max(a.shape[s.axis], 1))
    for c in groups.consumers:
        w = arrays[c.weight]
        np.add.at(freed, groups.inputs(c), w.size // max(w.shape[c.in_axis], 1))
    return freed


def _keep_one(groups: Groups, new: np.ndarray, gone: np.ndarray) -> np.ndarray:
    """``new`` less what would leave some tensor without units (never remove them all)."""
    new = new.copy()
    for tensor in groups.spaces:
        labels = groups.of(tensor)
        if labels.size and (new | gone)[labels].all():
            new[labels[new[labels]][0]] = False
    return new
