"""Parameter vectors an exporter stored once for several layers: one copy per layer, merged back.

Exporters store equal initializers once: the zero biases of a freshly initialized BERT's
feed-forward layers, its LayerNorm weights of ones. Several layers then read one tensor
(directly, or through ``Identity`` nodes), and structured pruning never slices a tensor another
node reads, so every unit of each of those layers stays. Such a vector is no tie of the model
(unlike an embedding table its language-model head reads, a matrix, which stays shared):
``separable`` finds them, ``unshare`` gives each reader its own copy before the dependency groups
are built, so each layer slices its own, and ``merge_copies`` stores the copies left equal once
again, so compaction never grows a model.

The other way round, ``stored_twice`` finds one parameter the exporter stored as several equal
matrices (ALBERT's shared layer, one copy per use in the dynamo export): each copy is shared by
the readers of all of them, as the one tensor TorchScript's export reads is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.structured.groups import subgraph_reads
from onnxprune.structured.surgery import Names
from onnxprune.weights import ConstantResolver, weight_uses


def separable(graph: onnx.GraphProto, constants: ConstantResolver) -> dict[str, set[str]]:
    """The shared parameter vectors of ``graph`` each reader may own a copy of.

    A stored floating-point tensor with one axis longer than 1 (a bias, a norm's scale, whatever
    its rank), read by more than one node of ``graph`` and by no subgraph, not a graph output,
    not quantized. Integer vectors (shape targets) are left to the edits that rewrite them.

    Returns:
        Per stored name: the names its readers read it by (itself, or the ends of its chains).
    """
    hidden = set().union(*subgraph_reads(graph).values(), (o.name for o in graph.output))
    found = {}
    for stored, uses in weight_uses(graph, constants).items():
        names = {name for _, name in uses}
        if len({index for index, _ in uses}) < 2 or not _vector(constants.shape(stored)):
            continue
        if hidden & (names | {stored}) or any(constants.source(n).dequantized for n in names):
            continue
        value = constants.value(stored)
        if value is not None and value.dtype.kind == "f":
            found[stored] = names
    return found


def _vector(shape: tuple[int, ...] | None) -> bool:
    """More than one element, all along one axis."""
    if shape is None:
        return False
    size = int(np.prod(shape))
    return size > 1 and size == max(shape)


def unshare(model: onnx.ModelProto, vectors: Mapping[str, Collection[str]]) -> dict[str, str]:
    """Give every node reading one of ``vectors`` a copy of its own, in place.

    Called once the chains of ``vectors`` are folded into initializers (``materialize``): each
    name ``vectors`` lists is an initializer then (one that is not stays shared). The first node
    reading a name keeps it; any other gets a copy named after it.

    Returns:
        Every initializer holding one of ``vectors``' values (the copies, the folded chain ends
        and the stored tensors themselves): the stored name it comes from.
    """
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    copies = {n: s for s, names in vectors.items() for n in {s, *names} if n in tensors}
    fresh = Names(model)
    owner: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for position, name in enumerate(node.input):
            if name not in tensors or name not in copies or owner.setdefault(name, index) == index:
                continue
            tensor = graph.initializer.add()
            tensor.CopyFrom(tensors[name])
            tensor.name = node.input[position] = fresh(name)
            copies[tensor.name] = copies[name]
            if model.ir_version < 4:  # IR 3: every initializer is also a graph input
                info = onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, None)
                graph.input.append(info)
    return copies


def merge_copies(model: onnx.ModelProto, copies: Mapping[str, str]) -> set[str]:
    """Store equal ``copies`` (``unshare``'s) of one vector once again, in place.

    Among the initializers of ``copies`` that come from one stored tensor and hold equal values
    (same type and shape), the stored tensor itself, or else the first, stays; the nodes reading
    the others read it. Their graph input and value_info entries go with them.

    Returns:
        The names of the initializers removed.
    """
    graph = model.graph
    kept: dict[tuple, str] = {}
    renamed: dict[str, str] = {}
    ordered = sorted(
        (t for t in graph.initializer if t.name in copies),
        key=lambda t: t.name != copies[t.name],  # the stored tensor first (a stable sort)
    )
    for tensor in ordered:
        value = numpy_helper.to_array(tensor)
        key = (copies[tensor.name], tensor.data_type, value.shape, value.tobytes())
        if kept.setdefault(key, tensor.name) != tensor.name:
            renamed[tensor.name] = kept[key]
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]
    for field in (graph.initializer, graph.input, graph.value_info):
        for index in range(len(field) - 1, -1, -1):
            if field[index].name in renamed:
                del field[index]
    return set(renamed)


def stored_twice(
    graph: onnx.GraphProto, arrays: Mapping[str, np.ndarray]
) -> dict[str, tuple[str, ...]]:
    """Equal floating-point matrices of ``arrays``: one parameter, stored once per use.

    Slicing the copies apart would make two layers of one (ALBERT's shared feed-forward layer,
    which the dynamo exporter writes twice): each copy counts as shared by the readers of all
    of them. A matrix has two axes longer than 1; one holding one value throughout (a fresh
    zero init, a stand-in for external data) is no copy of anything.

    Returns:
        Per copy: the nodes reading any of its copies.
    """
    candidates: dict[tuple, list[str]] = {}
    for name, a in arrays.items():
        if a.dtype.kind != "f" or sum(d > 1 for d in a.shape) < 2 or 0 in a.strides:
            continue
        key = (a.dtype.str, a.shape, a.reshape(-1)[:16].tobytes())
        candidates.setdefault(key, []).append(name)
    found: dict[str, tuple[str, ...]] = {}
    for names in candidates.values():
        while len(names) > 1:
            first = arrays[names[0]]
            same = [n for n in names if np.array_equal(arrays[n], first)]
            names = [n for n in names if n not in same]
            if len(same) > 1 and first.min() != first.max():
                readers = [n.name or n.output[0] for n in graph.node if set(same) & set(n.input)]
                found.update(dict.fromkeys(same, tuple(readers)))
    return found
