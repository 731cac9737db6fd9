"""Graph surgery on dependency groups: zero, fold and finally cut the units of chosen groups.

Weights are numpy arrays keyed by initializer name until ``cut`` writes them back; constants
folded into a layer without a bias wait in ``pending`` (keyed by the layer's output) and become a
bias input, or an Add node after a MatMul, when the model is cut.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.bodies import names_read
from onnxprune.structured.groups import Consumer, Folded, Groups
from onnxprune.structured.infos import initializer_infos, refresh

Arrays = MutableMapping[str, np.ndarray]


def zero(groups: Groups, chosen: np.ndarray, arrays: Arrays) -> None:
    """Zero the filters of ``chosen`` groups and the consumer inputs that read them.

    What is left computes exactly what the cut model computes: no consumer reads those units.
    """
    for s in groups.filters:
        _zero_along(arrays, s.name, s.axis, s.entries(chosen[groups.of(s.tensor)]))
    for c in groups.consumers:
        _zero_along(arrays, c.weight, c.in_axis, chosen[groups.inputs(c)])


def _zero_along(arrays: Arrays, name: str, axis: int, drop: np.ndarray) -> None:
    if drop.any():
        w = arrays[name]
        if not w.flags.writeable:
            w = arrays[name] = w.copy()
        np.moveaxis(w, axis, 0)[drop] = 0


def read(groups: Groups, arrays: Arrays) -> np.ndarray:
    """Per group: some consumer has a nonzero weight on one of its units."""
    found = np.zeros(groups.count, bool)
    for c in groups.consumers:
        found[groups.inputs(c)[_reads(c, arrays)]] = True
    return found


def _reads(c: Consumer, arrays: Arrays) -> np.ndarray:
    """Per input unit of consumer ``c``: some weight on it is nonzero."""
    w = arrays[c.weight]
    return np.moveaxis(w != 0, c.in_axis, 0).reshape(w.shape[c.in_axis], -1).any(axis=1)


def foldable(groups: Groups, consts: dict[str, np.ndarray], arrays: Arrays) -> np.ndarray:
    """Per group: every consumer reading its units sees a constant its bias can take."""
    bad = np.zeros(groups.count, bool)
    for c in groups.consumers:
        value = consts[c.tensor]
        ok = (np.isfinite(value) & (c.foldable | (value == 0))).reshape(c.groups, -1).all(axis=0)
        bad[groups.inputs(c)[~ok & _reads(c, arrays)]] = True
    return ~bad


def fold(
    groups: Groups,
    chosen: np.ndarray,
    consts: dict[str, np.ndarray],
    arrays: Arrays,
    pending: dict[str, Folded],
) -> np.ndarray:
    """Add the constants of ``chosen`` groups' units to their consumers' biases.

    Returns the groups whose constant was nonzero somewhere (folded, not just dropped).
    """
    folded = np.zeros(groups.count, bool)
    for c in groups.consumers:
        if not c.foldable:  # only zeros reach it (``foldable``): nothing to add
            continue
        labels = groups.of(c.tensor)
        value = np.where(chosen[labels], np.nan_to_num(consts[c.tensor]), 0.0)
        if not value.any():
            continue
        folded[labels[value != 0]] = True
        w = arrays[c.weight].astype(np.float64)
        if c.window is not None:  # a padded Conv: the kernel summed over the folded inputs
            f = _pending(pending, c, w.shape[0])
            kernel = np.tensordot(w, value, axes=([1], [0]))
            f.kernel = kernel if f.kernel is None else f.kernel + kernel
            f.window = c.window
            continue
        delta = _contribution(c, w, value) * c.scale
        if c.bias is None:
            f = _pending(pending, c, delta.size)
            f.bias = f.bias + delta
        else:
            b = arrays[c.bias]
            arrays[c.bias] = (b.astype(np.float64) + delta.reshape(b.shape)).astype(b.dtype)
    return folded


def _contribution(c: Consumer, w: np.ndarray, value: np.ndarray) -> np.ndarray:
    """What input units holding ``value`` everywhere add to each output unit."""
    moved = np.moveaxis(w, c.in_axis, -1) @ value
    out_axis = c.out_axis - (c.out_axis > c.in_axis)
    return np.moveaxis(moved, out_axis, 0).reshape(moved.shape[out_axis], -1).sum(axis=1)


def _pending(pending: dict[str, Folded], c: Consumer, n: int) -> Folded:
    return pending.setdefault(c.node.output[0], Folded(np.zeros(n)))


def cut(
    model: onnx.ModelProto,
    groups: Groups,
    chosen: np.ndarray,
    arrays: Arrays,
    pending: dict[str, Folded],
) -> None:
    """Remove the units of ``chosen`` groups from ``model`` (in place) and write ``arrays`` back."""
    keep = ~chosen[groups.labels]

    def kept(tensor: str) -> np.ndarray:
        return keep[groups.spaces[tensor].slots]

    graph = model.graph
    fresh = Names(model)
    for s in groups.slices:
        arrays[s.name] = np.compress(s.entries(kept(s.tensor)), arrays[s.name], axis=s.axis)
    for c in groups.consumers:
        arrays[c.weight] = np.compress(~chosen[groups.inputs(c)], arrays[c.weight], axis=c.in_axis)
    read_before = names_read(graph.node)
    for edit in groups.edits:
        edit(kept, arrays, fresh)
    drop_dead_nodes(graph, read_before)
    _drop_unread(graph, arrays, read_before - names_read(graph.node))
    layers = {c.node.output[0]: c.node for c in groups.consumers}
    for out, f in pending.items():
        node, units = layers[out], kept(out) if out in groups.spaces else slice(None)
        dtype = arrays[node.input[1]].dtype
        if f.bias.any():
            attach_bias(node, f.bias[units].astype(dtype), arrays, graph, fresh)
        if f.kernel is not None:
            kernel = f.kernel[units][:, np.newaxis].astype(dtype)
            _attach_map(node, kernel, f.window, arrays, graph, fresh, groups.opset)
    write_back(model, arrays)
    refresh(model, groups, kept)


def drop_dead_nodes(graph: onnx.GraphProto, read_before: set[str]) -> None:
    """Remove the nodes the edits left unread, and those feeding only them, in turn.

    An edit that gives a node a constant in place of a computed input (an Expand's shape the
    TorchScript exporter computes with ``ConstantOfShape``, ``Mul``, ``Equal`` and ``Where``;
    an LSTM's initial state that is an ``Expand`` of 0) leaves the computation behind: a node is
    dropped when no output of it is read any more though one was before the edits. A node
    nothing read before stays as it came. Their outputs' value_info entries go with them.
    """
    outputs = {o.name for o in graph.output}
    gone: set[str] = set()
    while True:
        read = names_read(graph.node) | outputs
        dead = [
            i
            for i, node in enumerate(graph.node)
            if not read.intersection(node.output) and read_before.intersection(node.output)
        ]
        if not dead:
            break
        for index in reversed(dead):
            gone.update(graph.node[index].output)
            del graph.node[index]
    for index in range(len(graph.value_info) - 1, -1, -1):
        if graph.value_info[index].name in gone:
            del graph.value_info[index]


def _drop_unread(graph: onnx.GraphProto, arrays: Arrays, names: set[str]) -> None:
    """Remove the initializers ``names`` an edit left unread (a shared target each reader copied).

    Their entries in the graph inputs and value_info go with them.
    """
    names = {n for n in names if n in arrays and n not in {o.name for o in graph.output}}
    if not names:
        return
    for name in names:
        del arrays[name]
    for field in (graph.initializer, graph.input, graph.value_info):
        for index in range(len(field) - 1, -1, -1):
            if field[index].name in names:
                del field[index]


def attach_bias(node, delta, arrays: Arrays, graph: onnx.GraphProto, fresh) -> None:
    """Give a layer without a bias the folded ``delta``: a bias input, or an Add after a MatMul."""
    out = node.output[0]
    name = fresh(f"{out}_folded_bias")
    arrays[name] = delta
    if node.op_type != "MatMul":
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = name
        return
    _add_after(node, name, graph, fresh)


def _attach_map(node, kernel, window, arrays: Arrays, graph: onnx.GraphProto, fresh, opset):
    """Add what folded inputs gave a padded Conv: ``kernel`` run over a constant 1, same window.

    ONNX Runtime folds the constant subgraph once when the session starts; the model stores only
    the summed kernel (no map over positions).
    """
    out = node.output[0]
    shape = np.array([1, 1, *window.sizes_in], np.int64)
    ones, mapped = fresh(f"{out}_folded_ones"), fresh(f"{out}_folded_map")
    weight = fresh(f"{out}_folded_kernel")
    arrays[weight] = kernel
    nodes = []
    if opset >= 9:
        shape_name = fresh(f"{out}_folded_shape")
        arrays[shape_name] = shape
        one = numpy_helper.from_array(np.ones(1, kernel.dtype))
        nodes.append(helper.make_node("ConstantOfShape", [shape_name], [ones], value=one))
    else:
        arrays[ones] = np.ones(shape, kernel.dtype)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "group"}
    nodes.append(helper.make_node("Conv", [ones, weight], [mapped], **attrs))
    _add_after(node, mapped, graph, fresh, nodes)


def _add_after(node, addend: str, graph: onnx.GraphProto, fresh, before=()) -> None:
    """``node``'s output becomes ``output + addend`` under the same name (``before`` first)."""
    out = node.output[0]
    pre = fresh(f"{out}_unfolded")
    node.output[0] = pre
    add = helper.make_node("Add", [pre, addend], [out], name=fresh(f"{node.name or out}_fold"))
    position = list(graph.node).index(node) + 1
    for i, extra in enumerate([*before, add]):
        graph.node.insert(position + i, extra)


def write_back(model: onnx.ModelProto, arrays: Arrays) -> None:
    """Store ``arrays`` as the initializers (changed ones replaced, new ones added).

    Initializers listed as graph inputs or value_info get their new shapes there
    (``infos.initializer_infos``); models older than IR 4 list every initializer as an input,
    so new ones are added to the inputs too.
    """
    graph = model.graph
    existing = {t.name: t for t in graph.initializer}
    for name, value in arrays.items():
        tensor = existing.get(name)
        if tensor is None:
            graph.initializer.append(numpy_helper.from_array(value, name))
        elif tuple(tensor.dims) != value.shape or not np.array_equal(
            numpy_helper.to_array(tensor), value
        ):
            tensor.CopyFrom(numpy_helper.from_array(value, name))
    if model.ir_version < 4:
        inputs = {vi.name for vi in graph.input}
        for tensor in graph.initializer:
            if tensor.name not in inputs:
                vi = graph.input.add()
                vi.CopyFrom(helper.make_tensor_value_info(tensor.name, tensor.data_type, None))
    initializer_infos(graph)


class Names:
    """Fresh tensor and node names for a model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.taken = {t.name for t in g.initializer} | {vi.name for vi in g.value_info}
        self.taken |= {vi.name for vi in g.input} | {vi.name for vi in g.output}
        for node in g.node:
            self.taken |= set(node.input) | set(node.output) | {node.name}

    def __call__(self, base: str) -> str:
        """``base``, or ``base_<i>`` with the first ``i`` that is free; taken from then on."""
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name


def filter_stats(groups: Groups, arrays: Arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: sum of |w|, sum of w² and number of weights over all its filters."""
    abs_sum = np.zeros(groups.count)
    sq_sum = np.zeros(groups.count)
    count = np.zeros(groups.count)
    for s in groups.filters:
        rows = s.rows(arrays[s.name])
        labels = groups.of(s.tensor)
        np.add.at(abs_sum, labels, np.abs(rows).sum(axis=1, dtype=np.float64))
        np.add.at(sq_sum, labels, np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
        np.add.at(count, labels, rows.shape[1])
    return abs_sum, sq_sum, count
