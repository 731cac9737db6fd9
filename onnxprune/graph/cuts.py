"""Layers that keep no weight and cut every path: effective sparsity 1, known without an analysis.

A layer whose weights are all zero passes nothing from its input to its output (what it writes
is its bias, a constant). Followed over whole tensors, with such layers blocked and every other
node passing signal from any of its inputs to all of its outputs, the graph holds every path the
analyses follow over units, and more. When no graph output is reached that way, no unit path
joins an input to an output either: every prunable weight is inactive and the effective sparsity
is exactly 1, at the channel level and at the finer exact level. A residual block whose
convolution keeps nothing is no cut: its skip connection carries the signal on.

An effective target's search (``pruners.steps``) uses it to drop, before any analysis, the
removal counts that empty such a set of layers (the layer collapse of Gupta et al.,
arXiv 2209.14624).
"""

from __future__ import annotations

from collections.abc import Collection

from onnxprune.graph.build import ConnectivityGraph


def cut_by(graph: ConnectivityGraph, empty: Collection[str]) -> bool:
    """Whether the layers named ``empty``, keeping no weight, leave no input-to-output path.

    Only a ``True`` is a certificate (effective sparsity 1); ``False`` says nothing. A graph with
    ``If``/``Loop``/``Scan`` bodies or recurrent layers always gives ``False``: a body is
    analysed with its inputs taken as carrying signal, and recurrent units are built from the
    weights themselves, so their weights may count as active in a cut graph.

    Args:
        graph: the connectivity graph.
        empty: names (``Layer.name``) of layers whose weights are all zero.

    Example:
        >>> import numpy as np
        >>> from onnx import helper, numpy_helper
        >>> from onnxprune.graph.build import build_graph
        >>> def x(name):
        ...     return helper.make_tensor_value_info(name, 1, [1, 2])
        >>> nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        >>> w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
        >>> model = helper.make_model(
        ...     helper.make_graph(nodes, "g", [x("x")], [x("y")], [w]), ir_version=8
        ... )
        >>> cut_by(build_graph(model), {"w"}), cut_by(build_graph(model), set())
        (True, False)
    """
    if graph.bodies or any(step.recurrent for step in graph.steps):
        return False
    reached = set(graph.inputs)
    for step in graph.steps:
        # Only a layer that reads nothing but its input is blocked (a node that also adds
        # another activation passes that one on).
        if step.layer is not None and step.layer.name in empty and step.inputs == (step.layer.x,):
            continue
        if reached.intersection(step.inputs):
            reached.update(step.outputs)
    return not reached.intersection(graph.outputs)
