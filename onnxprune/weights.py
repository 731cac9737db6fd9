"""Discovery of prunable weights, wherever exporters put them.

Initializers, ``Constant`` and ``ConstantOfShape`` nodes, and behind ``Identity``, ``Cast``,
``Transpose``, ``Reshape`` (constant shape; some Caffe2 exports reshape their classifier
weights), ``Unsqueeze``/``Squeeze`` (constant axes; the light DenseNet of the onnx package
unsqueezes its batch-norm vectors to ``[C, 1, 1]``), ``DequantizeLinear`` chains, and a
``Concat`` of constant ``Slice``s that reorders one weight along an axis (the TorchScript
exporter's LSTM/GRU gate order, where it does not fold it: inside the bodies of a scripted
model, Silero VAD's), in the
main graph and inside ``If``/``Loop``/``Scan`` bodies (a body's resolver falls back on its outer
scope). Each weight is mapped to the tensor a pruner has to rewrite, with the graph that stores
it and the layout changes between that tensor and what the layer consumes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.bodies import names_read, subgraphs
from onnxprune.errors import InvalidModelError


@dataclass(frozen=True, slots=True)
class WeightSource:
    """Where a prunable weight is stored, i.e. the tensor a pruner must rewrite.

    Attributes:
        name: the initializer, or the output of the ``Constant``/``ConstantOfShape`` node.
        kind: ``"initializer"``, ``"Constant"`` or ``"ConstantOfShape"``.
        steps: the layout changes between the stored tensor and the value the layer consumes, in
            order: ``("transpose", perm)``, ``("reshape", shape_before)`` or ``("take", (axis,
            *order))`` (entry ``j`` along ``axis`` is the stored entry ``order[j]``: a
            permutation).
        dequantized: whether a ``DequantizeLinear`` lies between storage and use.
        scope: the body that stores the tensor, e.g. ``If_3/then_branch`` (``""``: the main
            graph); sibling bodies may store tensors of the same name.
        path: where that body is: ``(node index, graph attribute)`` per level from the main
            graph (``subgraph_at``).
    """

    name: str
    kind: str
    steps: tuple[tuple[str, tuple[int, ...]], ...] = ()
    dequantized: bool = False
    scope: str = ""
    path: tuple[tuple[int, str], ...] = ()

    @property
    def key(self) -> str:
        """The weight's unique name, which keys masks and reports: ``scope/name`` in a body."""
        return f"{self.scope}/{self.name}" if self.scope else self.name

    def to_stored(self, consumed: np.ndarray) -> np.ndarray:
        """Undo the layout changes: an array in the consumed layout, in the stored layout."""
        for op, arg in reversed(self.steps):
            if op == "transpose":
                consumed = np.transpose(consumed, np.argsort(arg))
            elif op == "take":
                consumed = np.take(consumed, np.argsort(arg[1:]), axis=arg[0])
            else:
                consumed = consumed.reshape(arg)
        return consumed

    def to_consumed(self, stored: np.ndarray, consumed_shape: tuple[int, ...]) -> np.ndarray:
        """Redo the layout changes: an array in the stored layout, in the consumed layout."""
        afters = self._afters(consumed_shape)
        for (op, arg), after in zip(self.steps, afters, strict=True):
            if op == "transpose":
                stored = np.transpose(stored, arg)
            elif op == "take":
                stored = np.take(stored, arg[1:], axis=arg[0])
            else:
                stored = stored.reshape(after)
        return stored

    def consumed_index(self, flat: np.ndarray, consumed_shape: tuple[int, ...]) -> np.ndarray:
        """Flat (C-order) positions in the consumed layout of stored elements at ``flat``.

        The same map as ``to_consumed`` on the whole tensor, for a few elements only (a pruner
        breaking ties in the consumed order without materializing the weight).
        """
        afters = self._afters(consumed_shape)
        shape = self.stored_shape(consumed_shape)
        coords = np.unravel_index(np.asarray(flat, np.int64), shape)
        for (op, arg), after in zip(self.steps, afters, strict=True):
            if op == "transpose":
                coords = tuple(coords[p] for p in arg)
            elif op == "take":
                axis, moved = arg[0], np.argsort(arg[1:])  # stored entry i is consumed moved[i]
                coords = tuple(moved[c] if a == axis else c for a, c in enumerate(coords))
            else:
                coords = np.unravel_index(np.ravel_multi_index(coords, shape), after)
            shape = after
        return np.ravel_multi_index(coords, shape).astype(np.int64)

    def _afters(self, consumed_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The shape after each step, in step order."""
        afters, shape = [], tuple(consumed_shape)
        for op, arg in reversed(self.steps):  # walking back from the consumed shape
            afters.append(shape)
            shape = _before(op, arg, shape)
        return afters[::-1]

    def stored_shape(self, consumed_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The stored tensor's shape, given the shape the layer consumes."""
        shape = tuple(consumed_shape)
        for op, arg in reversed(self.steps):
            shape = _before(op, arg, shape)
        return shape


def _before(op: str, arg: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, ...]:
    """The shape before step ``(op, arg)``, given the shape after it."""
    if op == "transpose":
        return tuple(after[i] for i in np.argsort(arg))
    return after if op == "take" else arg


class TensorReader(Protocol):
    """Reads the data of an external tensor on demand (see ``onnxprune.external_data``)."""

    def read(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The tensor's value, read from its external file."""
        ...


class ConstantResolver:
    """Computes constant tensors of a graph on demand, following exporter-made chains.

    Nothing is cached: weights are materialized one at a time so peak memory stays near the
    largest tensor, not the model size. Initializers whose data is still in external files are
    read through ``external`` (``onnxprune.external_data.ExternalWeights``); without one they
    are refused rather than read from wherever the process happens to run.
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        external: TensorReader | None = None,
        *,
        outer: ConstantResolver | None = None,
        scope: str = "",
        path: tuple[tuple[int, str], ...] = (),
        known: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """A resolver of ``graph``; for a body, ``outer`` resolves the names it reads from outside.

        ``scope`` and ``path`` say where the body is (``WeightSource``). ``known``: values of
        node outputs computed elsewhere (the shape arithmetic fixed input sizes make constant,
        ``graph.shapes.infer_all``): values, not weights.
        """
        self._known = known or {}
        self._external = external
        self._initializers = {t.name: t for t in graph.initializer}
        self._producers = {out: node for node in graph.node for out in node.output}
        self._graph = graph
        self._read_counts: Counter[str] | None = None
        # Before IR 4 every initializer is also listed as a graph input; those are still weights.
        self._graph_inputs = {i.name for i in graph.input} - set(self._initializers)
        self._outer = outer
        self._scope, self._path = scope, path

    def body(self, graph: onnx.GraphProto, scope: str, index: int, name: str) -> ConstantResolver:
        """The resolver of ``graph``, body ``name`` of node ``index``, inside this one."""
        return ConstantResolver(
            graph, self._external, outer=self, scope=scope, path=(*self._path, (index, name))
        )

    def _outside(self, name: str) -> ConstantResolver | None:
        """The outer resolver when ``name`` is not defined in this graph (read from outside)."""
        local = name in self._initializers or name in self._producers or name in self._graph_inputs
        return None if local else self._outer

    @property
    def reads_external(self) -> bool:
        """Whether some weights are read from external files on demand (never kept)."""
        return self._external is not None

    def is_constant(self, name: str) -> bool:
        """Whether tensor ``name`` can be computed without graph inputs (by chains we follow)."""
        return self.source(name) is not None

    def value(self, name: str) -> np.ndarray | None:
        """The value of tensor ``name``, or ``None`` when it is not a constant we can follow."""
        if (outer := self._outside(name)) is not None:
            return outer.value(name)
        if name in self._known:
            return self._known[name]
        if name in self._initializers and name not in self._graph_inputs:
            tensor = self._initializers[name]
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                return numpy_helper.to_array(tensor)
            if self._external is None:
                raise InvalidModelError(f"tensor {name!r} has external data that was not loaded")
            return self._external.read(tensor)
        node = self._producers.get(name)
        if node is not None and node.op_type == "Concat":
            return self._concatenated(node)
        if node is None or node.op_type not in _CONSTANT_OPS:
            return None
        return _CONSTANT_OPS[node.op_type](self, node)

    def _concatenated(self, node: onnx.NodeProto) -> np.ndarray | None:
        """A ``Concat``'s value: a reordered constant (``taken``), or constants joined."""
        taken = self.taken(node)
        if taken is not None:
            data, axis, order = taken
            value = self.value(data)
            return None if value is None else np.take(value, order, axis=axis)
        parts = [self.value(name) for name in node.input]
        if not parts or any(part is None for part in parts):
            return None
        return np.concatenate(parts, axis=int(attr(node, "axis", 0)))

    def taken(self, node: onnx.NodeProto) -> tuple[str, int, np.ndarray] | None:
        """A ``Concat`` of ``Slice``s that reorders one constant along the Concat's axis.

        Each part a Slice of the same constant tensor with constant bounds on that axis only,
        read by nothing else, and the parts together holding each of its entries once:
        ``(the tensor, the axis, the order)``, entry ``j`` of the output being entry
        ``order[j]`` of the tensor. None for any other Concat.
        """
        parts = [self._producers.get(name) for name in node.input]
        if not parts or any(p is None or p.op_type != "Slice" or len(p.input) < 3 for p in parts):
            return None
        data = parts[0].input[0]
        shape = self.shape(data) if all(p.input[0] == data for p in parts) else None
        if not shape or self.source(data) is None:
            return None
        axis = int(attr(node, "axis", 0)) % len(shape)
        reads = self._reads()
        order = []
        for part in parts:
            bounds = [self.value(n) if n else None for n in part.input[1:5]]
            if any(n and v is None for n, v in zip(part.input[1:5], bounds, strict=False)):
                return None
            if bounds[0].size != 1 or reads[part.output[0]] != 1:  # one axis; read here only
                return None
            cut = sliced(bounds, len(shape), axis, shape[axis])
            if cut is None:
                return None
            order.append(cut[2])
        joined = np.concatenate(order)
        if not np.array_equal(np.sort(joined), np.arange(shape[axis])):
            return None
        return data, axis, joined

    def _reads(self) -> Counter[str]:
        """How many times the nodes of this graph read each name (their bodies included)."""
        if self._read_counts is None:
            counts: Counter[str] = Counter()
            for node in self._graph.node:
                counts.update(node.input)
                for sub in subgraphs(node):
                    counts.update(names_read(sub.node))
            self._read_counts = counts
        return self._read_counts

    def is_zero(self, name: str) -> bool:
        """Whether tensor ``name`` is all zeros whatever the inputs.

        A constant of zeros, or zeros carried through ops that keep them at any run-time
        shape: the ``Expand`` of a zero to the batch size that exporters write for the initial
        state of an LSTM, a ``ConstantOfShape`` filled with 0, a ``Slice`` of either.
        """
        if (outer := self._outside(name)) is not None:
            return outer.is_zero(name)
        value = self.value(name)
        if value is not None:
            return not np.any(value)
        node = self._producers.get(name)
        if node is None:
            return False
        if node.op_type == "ConstantOfShape":
            fill = attr(node, "value", None)
            return fill is None or not np.any(numpy_helper.to_array(fill))
        return node.op_type in _KEEP_ZEROS and self.is_zero(node.input[0])

    def shape(self, name: str) -> tuple[int, ...] | None:
        """Shape of constant ``name`` without materializing large tensors."""
        if (outer := self._outside(name)) is not None:
            return outer.shape(name)
        if name in self._initializers and name not in self._graph_inputs:
            return tuple(int(d) for d in self._initializers[name].dims)
        node = self._producers.get(name)
        if node is not None and node.op_type == "Concat":
            taken = self.taken(node)
            return None if taken is None else self.shape(taken[0])
        if node is None or node.op_type not in _CONSTANT_OPS:
            return None
        if node.op_type == "ConstantOfShape":
            dims = self.value(node.input[0])
            return None if dims is None else tuple(int(d) for d in dims)
        if node.op_type == "Constant":
            return self.value(name).shape
        if node.op_type in _RESHAPES:
            return self._reshaped(node)
        inner = self.shape(node.input[0])
        if inner is None or node.op_type != "Transpose":
            return inner
        perm = attr(node, "perm", None) or list(reversed(range(len(inner))))
        return tuple(inner[p] for p in perm)

    def source(self, name: str) -> WeightSource | None:
        """The stored tensor behind constant ``name``, or ``None`` when it is not a constant."""
        if (outer := self._outside(name)) is not None:
            return outer.source(name)
        where = {"scope": self._scope, "path": self._path}
        if name in self._initializers and name not in self._graph_inputs:
            return WeightSource(name, "initializer", **where)
        node = self._producers.get(name)
        if node is not None and node.op_type == "Concat":
            taken = self.taken(node)
            if taken is None:
                return None
            data, axis, order = taken
            inner = self.source(data)
            step = (("take", (axis, *(int(i) for i in order))),)
            return dataclasses.replace(inner, steps=inner.steps + step)
        if node is None or node.op_type not in _CONSTANT_OPS:
            return None
        if node.op_type == "Constant" or (
            node.op_type == "ConstantOfShape" and self.value(node.input[0]) is not None
        ):
            return WeightSource(name, node.op_type, **where)
        inner = self.source(node.input[0])
        helpers_constant = all(self.value(n) is not None for n in node.input[1:] if n)
        if inner is None or not helpers_constant:
            return None
        step: tuple[tuple[str, tuple[int, ...]], ...] = ()
        if node.op_type == "Transpose":
            before = self.shape(node.input[0]) or ()
            perm = attr(node, "perm", None) or list(reversed(range(len(before))))
            step = (("transpose", tuple(int(p) for p in perm)),)
        elif node.op_type in _RESHAPES:
            before = self.shape(node.input[0])
            if before is None:
                return None
            step = (("reshape", before),)
        dequantized = inner.dequantized or node.op_type == "DequantizeLinear"
        return dataclasses.replace(inner, steps=inner.steps + step, dequantized=dequantized)

    def _reshaped(self, node: onnx.NodeProto) -> tuple[int, ...] | None:
        """Output shape of a ``Reshape``/``Unsqueeze``/``Squeeze`` without computing its value."""
        before = self.shape(node.input[0])
        if before is None:
            return None
        if node.op_type == "Reshape":
            target = self.value(node.input[1])
            if target is None:
                return None
            return _reshape_target(before, target, bool(attr(node, "allowzero", 0)))
        axes = _axes(self, node)
        if axes is None:
            return None
        # the same numpy call as the value, on a zero-strided view: no memory for the data
        return _AXES_OPS[node.op_type](np.broadcast_to(np.False_, before), axes).shape


def weight_uses(
    graph: onnx.GraphProto, constants: ConstantResolver
) -> dict[str, list[tuple[int, str]]]:
    """Per stored constant tensor: where nodes read its value, past exporter-made chains.

    Each use is ``(node index, input name)`` in graph order, once per node and name. A chain
    link (an ``Identity``, ``Cast``, ``Transpose``... of a constant) is not a use; whatever reads
    its output is, through the link's output name.

    Example:
        >>> from onnx import helper
        >>> w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
        >>> g = helper.make_graph(
        ...     [helper.make_node("Identity", ["w"], ["w2"]),
        ...      helper.make_node("MatMul", ["x", "w"], ["h"]),
        ...      helper.make_node("MatMul", ["h", "w2"], ["y"])], "g", [], [], [w])
        >>> weight_uses(g, ConstantResolver(g))
        {'w': [(1, 'w'), (2, 'w2')]}
    """
    uses: dict[str, list[tuple[int, str]]] = {}
    reorders = [n for n in graph.node if n.op_type == "Concat" and constants.taken(n)]
    links = {name for n in reorders for name in (*n.input, n.output[0])}  # Concat and Slices
    for index, node in enumerate(graph.node):
        if node.op_type in _CONSTANT_OPS and any(
            constants.source(out) is not None for out in node.output
        ):
            continue  # a link of a chain (or a Constant): its readers read the weight
        if node.output and node.output[0] in links:
            continue  # a reordering of a weight: what reads the Concat reads the weight
        for tensor in dict.fromkeys(i for i in node.input if i):
            source = constants.source(tensor)
            if source is not None:
                uses.setdefault(source.name, []).append((index, tensor))
    return uses


def weight_readers(
    graph: onnx.GraphProto, constants: ConstantResolver
) -> dict[str, tuple[str, ...]]:
    """Per stored constant tensor: the nodes that read its value, past exporter-made chains.

    A chain link (an ``Identity``, ``Cast``, ``Transpose``... of a constant) is not a reader;
    whatever reads its output is (``weight_uses``). A weight with two readers is shared (tied):
    an embedding ``Gather`` and the ``MatMul`` of a language-model head, or two layers
    TorchScript deduplicated through ``Identity``. A node reading it twice counts once.

    Example:
        >>> from onnx import helper
        >>> w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
        >>> g = helper.make_graph(
        ...     [helper.make_node("Identity", ["w"], ["w2"]),
        ...      helper.make_node("MatMul", ["x", "w"], ["h"], name="fc1"),
        ...      helper.make_node("MatMul", ["h", "w2"], ["y"], name="fc2")], "g", [], [], [w])
        >>> weight_readers(g, ConstantResolver(g))
        {'w': ('fc1', 'fc2')}
    """
    readers: dict[str, tuple[str, ...]] = {}
    for stored, uses in weight_uses(graph, constants).items():
        names = (graph.node[i].name or f"{graph.node[i].op_type}_{i}" for i, _ in uses)
        readers[stored] = tuple(dict.fromkeys(names))
    return readers


def subgraph_at(graph: onnx.GraphProto, path: tuple[tuple[int, str], ...]) -> onnx.GraphProto:
    """The body at ``path`` (``WeightSource.path``) inside ``graph``; ``graph`` for ``()``."""
    for index, name in path:
        node = graph.node[index]
        graph = next(a.g for a in node.attribute if a.name == name)
    return graph


def resolver_at(graph: onnx.GraphProto, path: tuple[tuple[int, str], ...]) -> ConstantResolver:
    """The resolver of the body at ``path`` inside ``graph``, its outer scopes behind it."""
    resolver = ConstantResolver(graph)
    for index, name in path:
        graph = next(a.g for a in graph.node[index].attribute if a.name == name)
        resolver = resolver.body(graph, "", index, name)
    return resolver


def _reshape_target(
    before: tuple[int, ...], target: np.ndarray, allowzero: bool
) -> tuple[int, ...]:
    dims = [int(d) for d in target.reshape(-1)]
    if not allowzero:
        dims = [before[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = int(np.prod(before)) // max(known, 1)
    return tuple(dims)


def attr(node: onnx.NodeProto, name: str, default=None):
    """Attribute ``name`` of ``node`` as a Python value, or ``default`` when absent."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def sliced(
    inputs: list[np.ndarray | None], rank: int, axis: int, size: int
) -> tuple[int, int, np.ndarray] | None:
    """Where a Slice with constant ``inputs`` cuts ``axis`` of a ``rank``-D input.

    Args:
        inputs: its starts, ends, axes and steps (None where absent; the list may be shorter).
        rank: the rank of the sliced input.
        axis: the axis asked about, ``size`` long.
        size: its length.

    Returns:
        The entry of its ``axes`` for ``axis``, its step there, and the indices it keeps
        (ONNX clamps its bounds as Python's slices do); None when it leaves ``axis`` whole or
        its step is 0.
    """
    starts, ends, axes, steps = (
        None if v is None else np.asarray(v).reshape(-1).tolist() for v in (*inputs, None, None)[:4]
    )
    axes = list(range(len(starts))) if axes is None else [a % rank for a in axes]
    if axis not in axes:
        return None
    entry = axes.index(axis)
    step = 1 if steps is None else int(steps[entry])
    if step == 0:
        return None
    return entry, step, np.arange(size)[int(starts[entry]) : int(ends[entry]) : step]


def _value_constant(_: ConstantResolver, node: onnx.NodeProto) -> np.ndarray:
    first = node.attribute[0]
    value = onnx.helper.get_attribute_value(first)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if first.name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if first.name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    if isinstance(value, onnx.SparseTensorProto):
        dense = np.zeros(
            tuple(value.dims), onnx.helper.tensor_dtype_to_np_dtype(value.values.data_type)
        )
        indices = numpy_helper.to_array(value.indices)
        coords = indices if indices.ndim == 1 else tuple(indices.T)
        dense.reshape(-1 if indices.ndim == 1 else dense.shape)[coords] = numpy_helper.to_array(
            value.values
        )
        return dense
    return np.asarray(value)


def _value_constant_of_shape(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    shape = r.value(node.input[0])
    if shape is None:
        return None
    fill = attr(node, "value", None)
    scalar = numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
    return np.full(tuple(int(d) for d in shape), scalar, dtype=np.asarray(scalar).dtype)


def _value_identity(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    return r.value(node.input[0])


def _value_cast(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    x = r.value(node.input[0])
    to = onnx.helper.tensor_dtype_to_np_dtype(attr(node, "to", onnx.TensorProto.FLOAT))
    return None if x is None else x.astype(to)


def _value_transpose(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    x = r.value(node.input[0])
    return None if x is None else np.transpose(x, attr(node, "perm", None))


def _value_reshape(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    x, target = r.value(node.input[0]), r.value(node.input[1])
    if x is None or target is None:
        return None
    return x.reshape(_reshape_target(x.shape, target, bool(attr(node, "allowzero", 0))))


def _axes(r: ConstantResolver, node: onnx.NodeProto) -> tuple[int, ...] | None:
    """Axes of an ``Unsqueeze``/``Squeeze``; ``None`` when they are computed at run time.

    An attribute before opset 13, input 1 from opset 13 on; ``()`` when absent (``Squeeze``
    then removes every axis of size 1).
    """
    if len(node.input) > 1 and node.input[1]:
        axes = r.value(node.input[1])
        return None if axes is None else tuple(int(a) for a in axes.reshape(-1))
    return tuple(int(a) for a in attr(node, "axes", ()))


def _unsqueezed(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    # numpy, like ONNX, counts negative axes from the end of the output's rank
    return np.expand_dims(x, axes)


def _squeezed(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.squeeze(x, axis=axes or None)


_AXES_OPS = {"Unsqueeze": _unsqueezed, "Squeeze": _squeezed}


def _value_axes_op(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    x, axes = r.value(node.input[0]), _axes(r, node)
    return None if x is None or axes is None else _AXES_OPS[node.op_type](x, axes)


def _value_dequantize(r: ConstantResolver, node: onnx.NodeProto) -> np.ndarray | None:
    x = r.value(node.input[0])
    scale = r.value(node.input[1])
    if x is None or scale is None:
        return None
    zero = r.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    axis = attr(node, "axis", 1)
    shape = [1] * x.ndim
    if scale.ndim == 1 and x.ndim > 0:
        shape[axis % x.ndim] = scale.size
    zp = np.zeros(1, np.float32) if zero is None else zero.astype(np.float32).reshape(shape)
    return (x.astype(np.float32) - zp) * scale.astype(np.float32).reshape(shape)


_CONSTANT_OPS = {
    "Constant": _value_constant,
    "ConstantOfShape": _value_constant_of_shape,
    "Identity": _value_identity,
    "Cast": _value_cast,
    "Transpose": _value_transpose,
    "Reshape": _value_reshape,
    "Unsqueeze": _value_axes_op,
    "Squeeze": _value_axes_op,
    "DequantizeLinear": _value_dequantize,
}

# Ops whose output is all zeros when their first input is, whatever the others (a Slice,
# Gather or Split picks entries of it: the TorchScript export of an LSTM with a dynamic batch
# slices each layer's initial state from one ConstantOfShape of zeros).
_KEEP_ZEROS = frozenset(
    {
        "Expand",
        "Slice",
        "Gather",
        "Split",
        "Tile",
        "Reshape",
        "Unsqueeze",
        "Squeeze",
        "Flatten",
        "Identity",
        "Cast",
        "Transpose",
    }
)

# Ops that only change the shape: the stored-to-consumed step is a reshape.
_RESHAPES = frozenset({"Reshape", "Unsqueeze", "Squeeze"})
