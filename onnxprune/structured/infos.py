"""Stored shapes after surgery: every value_info agrees with the tensors the cut model computes.

Exporters store shapes beside the graph: PyTorch's dynamo exporter writes a value_info for every
weight, bias and intermediate tensor. A cut changes the shapes of weights and of the activations
whose units it removed (and of whatever a rewritten Reshape target feeds); an old entry left
behind makes ``onnx.checker`` (full check) and strict shape inference fail, since inference meets
a stored shape that differs from the one it computes. ``write_back`` gives the entries of
initializers their arrays' shapes; ``refresh`` fixes the rest once the graph is cut, first by the
dependency groups (the unit axis of every tensor that lost units), then by shape inference on the
cut graph for every tensor whose shape it can compute.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import onnx

from onnxprune.graph.shapes import infer_shapes
from onnxprune.structured.groups import Groups


def initializer_infos(graph: onnx.GraphProto) -> None:
    """Give the graph input and value_info entries of initializers the initializers' shapes."""
    dims = {t.name: t.dims for t in graph.initializer}
    for info in (*graph.input, *graph.value_info):
        if info.name in dims and info.type.HasField("tensor_type"):
            shape = info.type.tensor_type.shape
            shape.ClearField("dim")
            for d in dims[info.name]:
                shape.dim.add().dim_value = d


def refresh(model: onnx.ModelProto, groups: Groups, kept: Callable[[str], np.ndarray]) -> None:
    """Bring the stored shapes of activations in line with the cut ``model`` (in place).

    Args:
        model: the cut model, its initializers written back.
        groups: the dependency groups the cut was made on.
        kept: per tensor of ``groups.spaces``, which of its units stayed.
    """
    unit_infos(model.graph, groups, kept)
    inferred_infos(model)


def inferred_infos(model: onnx.ModelProto) -> None:
    """Fix every stored static size that shape inference on ``model`` computes otherwise.

    Value_info entries whose rank differs from the inferred one are dropped (they are optional
    hints); a graph output keeps its entry, with the inferred shape when its stored rank is
    wrong: ddddocr's OCR model declares its [16, 1, classes] output as [1, seqlen], which
    inference only sees through once fixed input sizes fold its Reshape target (``--dim``), and
    the full checker then refuses the cut model. Sizes inference does not know stay as stored.
    """
    graph = model.graph
    stored, outputs = list(graph.value_info), [copy.deepcopy(o) for o in graph.output]
    del graph.value_info[:]  # inference from the graph alone, not from the old hints
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        shapes = infer_shapes(model)
    finally:
        graph.value_info.extend(stored)
        for output, old in zip(graph.output, outputs, strict=True):
            output.CopyFrom(old)
    for index in range(len(graph.value_info) - 1, -1, -1):
        if not _agree(graph.value_info[index], shapes.get(graph.value_info[index].name)):
            del graph.value_info[index]
    for output in graph.output:  # outputs stay; a wrong rank takes the inferred shape
        if not _agree(output, shapes.get(output.name)):
            _set_shape(output, shapes[output.name])


def unit_infos(graph: onnx.GraphProto, groups: Groups, kept: Callable[[str], np.ndarray]) -> None:
    """New unit counts in value_info; entries of two-axis spaces are dropped (optional hints)."""
    for index in range(len(graph.value_info) - 1, -1, -1):
        vi = graph.value_info[index]
        space = groups.spaces.get(vi.name)
        if space is None or not vi.type.tensor_type.HasField("shape"):
            continue
        if space.inner:
            del graph.value_info[index]
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == space.rank and dims[space.axis].HasField("dim_value"):
            dims[space.axis].dim_value = int(kept(vi.name).sum())


def _set_shape(info: onnx.ValueInfoProto, sizes: tuple[int | None, ...]) -> None:
    """Store ``sizes`` as ``info``'s shape (``None``: a dimension of unknown size)."""
    shape = info.type.tensor_type.shape
    shape.ClearField("dim")
    for size in sizes:
        dim = shape.dim.add()
        if size is not None:
            dim.dim_value = size


def _agree(info: onnx.ValueInfoProto, inferred: tuple[int | None, ...] | None) -> bool:
    """Whether ``info`` can stay: its static sizes are the ``inferred`` ones (fixed in place).

    An entry whose rank differs from the inferred one cannot be fixed: it goes. Sizes inference
    does not know are left as stored.
    """
    if inferred is None or not info.type.tensor_type.HasField("shape"):
        return True
    dims = info.type.tensor_type.shape.dim
    if len(dims) != len(inferred):
        return False
    for d, size in zip(dims, inferred, strict=True):
        if size is not None and d.HasField("dim_value") and d.dim_value != size:
            d.dim_value = size
    return True
