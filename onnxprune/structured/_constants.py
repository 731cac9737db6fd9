"""Weights computed by constant nodes, turned into initializers before structured pruning.

Structured pruning slices initializers, but some exports compute their weights with nodes:
``Constant``, ``ConstantOfShape`` of a shape initializer (every weight of the light ResNet-50
and DenseNet-121 in the onnx package), and chains of ``Identity``, ``Cast``, ``Reshape``,
``Transpose``, ``Unsqueeze`` and ``Squeeze`` behind them, and a ``Concat`` of ``Slice``s that
reorders one weight (an LSTM's gates, where the exporter did not fold them; its Slices go with
it). ``materialize`` replaces such nodes
by initializers holding the values ``onnxprune.weights.ConstantResolver`` computes.
``DequantizeLinear`` is never folded: quantized weights stay quantized.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.bodies import names_read, subgraphs
from onnxprune.structured.surgery import drop_dead_nodes
from onnxprune.weights import ConstantResolver

# Ops folded when every input is constant; ConstantResolver computes each of them.
_FOLDED = frozenset(
    {
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Identity",
        "Cast",
        "Reshape",
        "Transpose",
        "Unsqueeze",
        "Squeeze",
    }
)

# Element types whose values numpy computes exactly as ONNX does. Strings, complex numbers and
# the float8/float4/int4 families (saturating casts, packed storage) are left to the runtime.
_EXACT_TYPES = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.BOOL,
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
    }
)


def materialize(model: onnx.ModelProto, keep: Collection[str] = ()) -> int:
    """Turn weights computed by constant nodes into initializers, in place; returns how many.

    Walks ``model.graph.node`` in order and replaces each node of ``_FOLDED`` whose inputs are
    all constant (initializers, or outputs folded before it) by an initializer named as its
    output. A node is left as it is when its output is a graph output or read by nothing, or
    when its value cannot be computed exactly. Initializers that only the removed nodes read
    (the ``__SHAPE`` tensors of ``ConstantOfShape``) are removed; folded outputs that only other
    folded nodes read are not kept. Before IR 4 every initializer is also a graph input, so
    graph inputs are added and removed with them. ``ir_version`` and ``opset_import`` are kept.

    Args:
        model: the model, changed in place.
        keep: outputs never folded (with whatever is computed from them): the chains of a
            weight several nodes read, which folding would store once per chain.

    Returns:
        The number of nodes removed.

    Example:
        >>> from onnx import TensorProto, helper
        >>> c = helper.make_tensor("c", TensorProto.FLOAT, [2], [1.0, 2.0])
        >>> graph = helper.make_graph(
        ...     [
        ...         helper.make_node("Constant", [], ["w"], value=c),
        ...         helper.make_node("Mul", ["x", "w"], ["y"]),
        ...     ],
        ...     "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        ... )
        >>> model = helper.make_model(
        ...     graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]
        ... )
        >>> materialize(model)
        1
        >>> [t.name for t in model.graph.initializer], [n.op_type for n in model.graph.node]
        (['w'], ['Mul'])
    """
    graph = model.graph
    values, removed = _fold(graph, _constant_initializers(model), set(keep))
    if not removed:
        return 0
    kept_nodes = [n for i, n in enumerate(graph.node) if i not in removed]
    used = names_read(kept_nodes) | {o.name for o in graph.output}
    new = [numpy_helper.from_array(v, name) for name, v in values.items() if name in used]
    read_by_removed = {i for idx in removed for i in graph.node[idx].input}
    dropped = {t.name for t in graph.initializer if t.name in read_by_removed - used}

    for index in sorted(removed, reverse=True):
        del graph.node[index]
    _delete(graph.initializer, dropped)
    graph.initializer.extend(new)
    _delete(graph.value_info, dropped | (set(values) - used))
    if model.ir_version < 4:  # IR 3: every initializer is also a graph input
        _delete(graph.input, dropped)
        graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in new)
    return len(removed)


def input_free(graph: onnx.GraphProto) -> set[str]:
    """The node outputs of ``graph`` computed without reading a graph input, even by its shape.

    Their values hold for any input size, so they may be folded into a model whose inputs keep
    symbolic dimensions: the padding amounts TorchScript computes from constants for
    ``F.pad`` (``ConstantOfShape``, ``Concat``, ``Slice``...), which a structured rule needs.
    Nodes with subgraphs count as reading an input (their bodies are not followed).
    """
    fed = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    free: set[str] = set()
    for node in graph.node:
        outputs = free if not subgraphs(node) and not fed.intersection(node.input) else fed
        outputs.update(o for o in node.output if o)
    return free


def fold_known(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> int:
    """Store the computed tensors ``values`` gives as initializers, in place; returns how many.

    ``values`` are what fixed input shapes make constant (``graph.shapes``'s
    ``infer_shapes_and_values``): the shape arithmetic exporters write over ``Shape``. A value is
    stored where a node reads it that computes something not in ``values`` (a Reshape target,
    an Expand shape); its producer goes, and so does the arithmetic that then feeds nothing
    (the ``Shape`` nodes reading units included). The model then computes right for those
    input shapes only.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    frontier = {
        name
        for node in graph.node
        if not set(node.output) <= set(values) and not subgraphs(node)
        for name in node.input
        if name in values and name not in outputs
    }
    if not frontier:
        return 0
    read_before = names_read(graph.node)
    for index in range(len(graph.node) - 1, -1, -1):
        if set(graph.node[index].output) & frontier:
            del graph.node[index]
    graph.initializer.extend(numpy_helper.from_array(values[name], name) for name in frontier)
    drop_dead_nodes(graph, read_before)
    unread = read_before - names_read(graph.node) - outputs
    _delete(graph.initializer, unread)
    _delete(graph.value_info, frontier)
    if model.ir_version < 4:  # IR 3: every initializer is also a graph input
        _delete(graph.input, unread)
        graph.input.extend(
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(values[n].dtype), values[n].shape
            )
            for n in frontier
        )
    return len(frontier)


def _fold(
    graph: onnx.GraphProto, constant: set[str], keep: set[str]
) -> tuple[dict[str, np.ndarray], set[int]]:
    """Values of the nodes to fold, by output name, and the nodes' indices in ``graph.node``.

    ``constant`` (the constant initializers) grows with each folded output; ``keep`` are
    outputs not to fold.
    """
    resolver = ConstantResolver(graph)
    read = names_read(graph.node)
    taken = {o.name for o in graph.output} | {i.name for i in graph.input} | constant | keep
    taken |= _conv_data_only(graph)
    producers = {out: index for index, node in enumerate(graph.node) for out in node.output}
    values: dict[str, np.ndarray] = {}
    removed: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        reorder = resolver.taken(node) if node.op_type == "Concat" else None
        if node.op_type not in _FOLDED and reorder is None:
            continue
        if len(node.output) != 1 or node.output[0] in taken or node.output[0] not in read:
            continue  # a graph output, read by nothing, or a name clash
        inputs = [reorder[0]] if reorder else node.input  # a reordering reads through its Slices
        if not all(name in constant for name in inputs if name) or _external_constant(node):
            continue
        value = resolver.value(node.output[0])
        if value is None or not _exact(value):
            continue
        values[node.output[0]] = value
        constant.add(node.output[0])
        removed.add(index)
        if reorder:
            removed.update(producers[name] for name in node.input)
    return values, removed


def _conv_data_only(graph: onnx.GraphProto) -> set[str]:
    """``ConstantOfShape`` outputs read only as the data input of Convs: fills, not weights.

    Compaction writes such a fill (a constant 1 that a padded Conv's folded kernel runs over);
    it is left as a node so that the model stores no array of the feature map's size.
    """
    data = {n.input[0] for n in graph.node if n.op_type == "Conv"}
    elsewhere = {
        name for n in graph.node for i, name in enumerate(n.input) if i or n.op_type != "Conv"
    }
    fills = {n.output[0] for n in graph.node if n.op_type == "ConstantOfShape"}
    return fills & data - elsewhere


def _constant_initializers(model: onnx.ModelProto) -> set[str]:
    """Initializers whose values are fixed and read here: in memory, of an ``_EXACT_TYPES`` type.

    From IR 4 on an initializer that is also a graph input is only a default the caller may
    override; before IR 4 every initializer is listed as an input and is a constant.
    """
    graph = model.graph
    overridable = {i.name for i in graph.input} if model.ir_version >= 4 else set()
    return {
        t.name
        for t in graph.initializer
        if t.name not in overridable
        and t.data_type in _EXACT_TYPES
        and t.data_location != TensorProto.EXTERNAL
    }


def _external_constant(node: onnx.NodeProto) -> bool:
    """Whether a ``Constant``'s tensor is stored in a file that was not loaded."""
    return any(
        a.type == onnx.AttributeProto.TENSOR and a.t.data_location == TensorProto.EXTERNAL
        for a in node.attribute
    )


def _exact(value: np.ndarray) -> bool:
    """Whether ``value`` has an ``_EXACT_TYPES`` element type (else the runtime computes it)."""
    if value.dtype.kind in "OSUc":
        return False
    try:
        return helper.np_dtype_to_tensor_dtype(value.dtype) in _EXACT_TYPES
    except (KeyError, ValueError, TypeError):  # a dtype ONNX has no type for
        return False


def _delete(field, names: set[str]) -> None:
    """Remove the entries called ``names`` from a repeated field of named messages."""
    for index in range(len(field) - 1, -1, -1):
        if field[index].name in names:
            del field[index]
