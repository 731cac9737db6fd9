"""Ops ONNX Runtime registers in ONNX's own domain that onnx does not know.

``onnxruntime.transformers.optimizer`` writes a fused RMSNorm as ``SimplifiedLayerNormalization``
in the default domain, where ONNX Runtime registers it and onnx has no schema: ``onnx.checker``
refuses the model although ONNX Runtime runs it. ``model.check_model`` checks such a model with
those nodes moved to a stand-in domain (every other check of the checker still applies) and
accepts it only when ONNX Runtime loads it on the CPU; otherwise the checker's refusal stands.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx
from onnx import helper

from onnxprune.bodies import subgraphs
from onnxprune.errors import InvalidModelError

DEFAULT_DOMAINS = ("", "ai.onnx")
"""ONNX's own domain, by both of its names."""
STAND_IN = "onnxprune.runtime_ops"
"""Where ``stand_in`` moves them for the checker, which passes over a custom domain's ops."""


def unknown_ops(model: onnx.ModelProto) -> set[str]:
    """Op types of ``model``'s default-domain nodes (subgraphs included) onnx has no schema for.

    An op type that is not valid UTF-8 (protobuf gives it as bytes) is left to the checker,
    which refuses it.
    """
    version = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    return {
        node.op_type
        for node in all_nodes(model.graph)
        if node.domain in DEFAULT_DOMAINS
        and isinstance(node.op_type, str)
        and not onnx.defs.has(node.op_type, version)
    }


def stand_in(model: onnx.ModelProto, ops: set[str]) -> None:
    """Move the default-domain nodes of ``ops`` to ``STAND_IN``, imported (in place)."""
    for node in all_nodes(model.graph):
        if node.domain in DEFAULT_DOMAINS and node.op_type in ops:
            node.domain = STAND_IN
    model.opset_import.append(helper.make_opsetid(STAND_IN, 1))


def runtime_loads(model: onnx.ModelProto) -> bool:
    """Whether ONNX Runtime makes a CPU session of ``model``, a ``model.light_copy``.

    Its large weights are inputs already; tensors still in external files become inputs too
    (in place), so the session needs no file.
    """
    from onnxprune.runtime import create_session

    graph = model.graph
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        graph.initializer.remove(tensor)
        graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
        )
    try:
        create_session(model.SerializeToString(), "cpu", threads=1)
    except InvalidModelError:
        return False
    return True


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, those of its subgraphs included."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from all_nodes(sub)
