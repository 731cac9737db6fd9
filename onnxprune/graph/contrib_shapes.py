"""Shapes of ONNX Runtime's ops (``com.microsoft`` and a few more), which onnx's inference lacks.

``onnxruntime.transformers.optimizer`` fuses a transformer export into ``Attention``,
``MultiHeadAttention``, ``SkipLayerNormalization``, ``BiasGelu``... onnx's shape inference
stops at each of them, and every shape downstream is lost. Two remedies, both applied to the light
copy ``graph.shapes`` infers on (the model itself is never changed):

- ``stand_in``: an op whose first output has the shape of an input (a fused normalization or
  activation) is replaced by an ``Identity`` of that input, in place (node positions stay: they
  name the bodies), so inference runs through it in one pass;
- ``spec_shapes``: the other outputs of those ops, and the attention ops' outputs, computed from
  their inputs' inferred shapes by the op's spec; ``graph.shapes`` gives them back as hints and
  infers again, once per attention layer at most.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import helper

from onnxprune.weights import attr

CONTRIB = "com.microsoft"
"""ONNX Runtime's contrib ops' domain (fused attention, normalizations and activations)."""
Shape = tuple[int | None, ...]
"""As ``graph.shapes.Shape`` (which imports this module)."""

LIKE_INPUT = {
    (CONTRIB, "SkipLayerNormalization"): {0: 0, 3: 0},
    (CONTRIB, "SkipSimplifiedLayerNormalization"): {0: 0, 3: 0},
    (CONTRIB, "BiasGelu"): {0: 0},
    (CONTRIB, "FastGelu"): {0: 0},
    (CONTRIB, "Gelu"): {0: 0},
    (CONTRIB, "QuickGelu"): {0: 0},
    (CONTRIB, "BiasAdd"): {0: 0},
    (CONTRIB, "RotaryEmbedding"): {0: 0},
    (CONTRIB, "EmbedLayerNormalization"): {2: 0},
    ("", "SimplifiedLayerNormalization"): {0: 0},
}
"""Per ONNX Runtime op (domain, type), the outputs (by index) that have the shape of an input
(by index). ``SimplifiedLayerNormalization`` (RMSNorm) is ONNX Runtime's in ONNX's own domain,
which onnx does not know either (``onnxprune.runtime_ops``)."""

ATTENTION = ("Attention", "MultiHeadAttention", "GroupQueryAttention")


def stand_in(graph: onnx.GraphProto) -> None:
    """Replace the contrib ops of ``graph`` whose first output has an input's shape (in place).

    ``EmbedLayerNormalization`` becomes the ``Gather`` of its word embedding by the token ids,
    which has the shape of its first output.
    """
    for node in graph.node:
        if not node.output or not node.output[0]:
            continue
        if _key(node) == (CONTRIB, "EmbedLayerNormalization") and len(node.input) > 2:
            inputs = [node.input[2], node.input[0]]
            node.CopyFrom(helper.make_node("Gather", inputs, [node.output[0]], node.name))
        elif LIKE_INPUT.get(_key(node), {}).get(0) == 0:
            node.CopyFrom(
                helper.make_node("Identity", [node.input[0]], [node.output[0]], node.name)
            )


def contrib_nodes(graph: onnx.GraphProto) -> int:
    """How many contrib attention nodes ``graph`` holds (each may need one more inference pass)."""
    return sum(node.domain == CONTRIB and node.op_type in ATTENTION for node in graph.node)


def spec_shapes(graph: onnx.GraphProto, shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """Output shapes of the contrib nodes of ``graph`` (before ``stand_in``) from ``shapes``."""
    out: dict[str, Shape] = {}
    for node in graph.node:
        for index, source in LIKE_INPUT.get(_key(node), {}).items():
            shape = shapes.get(_at(node.input, source))
            if index and shape is not None and _at(node.output, index):
                out[node.output[index]] = shape
        if node.domain == CONTRIB and node.op_type in ATTENTION and node.output and node.output[0]:
            shape = _attention(node, shapes)
            if shape is not None:
                out[node.output[0]] = shape
    return out


def typed_like(graph: onnx.GraphProto) -> dict[str, str]:
    """Each output of a contrib node, and the input whose element type it has.

    The first input, or ``EmbedLayerNormalization``'s word embedding (its first input is ids).
    """
    return {
        out: _at(node.input, 2 if node.op_type == "EmbedLayerNormalization" else 0)
        for node in graph.node
        if (node.domain == CONTRIB or _key(node) in LIKE_INPUT) and node.input
        for out in node.output
        if out
    }


def _key(node: onnx.NodeProto) -> tuple[str, str]:
    return ("" if node.domain == "ai.onnx" else node.domain, node.op_type)


def _at(names, index: int) -> str:
    return names[index] if len(names) > index else ""


def _attention(node: onnx.NodeProto, shapes: Mapping[str, Shape]) -> Shape | None:
    """The first output of an attention op: ``[batch, sequence, heads * value head size]``."""
    q = shapes.get(node.input[0])
    if q is None:
        return None
    if node.op_type == "Attention":
        w = shapes.get(_at(node.input, 1))
        sizes = attr(node, "qkv_hidden_sizes", None)
        if sizes and (not isinstance(sizes, list) or len(sizes) != 3):
            return None
        if len(q) != 3 or (not sizes and (w is None or len(w) != 2 or w[1] is None)):
            return None
        return (*q[:2], int(sizes[2]) if sizes else w[1] // 3)
    if node.op_type == "GroupQueryAttention":
        heads, kv = int(attr(node, "num_heads", 0)), int(attr(node, "kv_num_heads", 0))
        packed = not _at(node.input, 1)
        if len(q) != 3 or q[2] is None or not heads:
            return None
        return (*q[:2], q[2] // (heads + 2 * kv) * heads if packed else q[2])
    v = shapes.get(_at(node.input, 2))
    if len(q) == 5:  # packed Q, K, V: [B, S, N, 3, H]
        return None if None in q[2:] else (*q[:2], q[2] * q[4])
    if len(q) != 3 or v is None:
        return None
    if len(v) == 4:  # values as [B, N, T, H]
        return None if v[1] is None or v[3] is None else (*q[:2], v[1] * v[3])
    return (*q[:2], v[2]) if len(v) == 3 else None
