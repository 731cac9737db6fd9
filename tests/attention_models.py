"""Small models with ONNX Runtime's fused attention ops (``com.microsoft``), built by hand.

``fused``: ``Attention`` (one QKV weight and bias, a ``mask_index``), its output projection,
``SkipLayerNormalization`` with the input, and a ``FastGelu`` feed-forward block.
``split``: Q, K and V MatMuls into ``MultiHeadAttention`` (one bias ``[3C]``, a key padding
mask) or ``GroupQueryAttention`` (``kv`` K/V heads), then the output projection. Weights are drawn
under a fixed seed; ``zero`` names (weight, column slice) pairs to zero, so a test can make a head
or a neuron dead by hand.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS = "com.microsoft"
T = 6
"""Sequence length of every input."""


def _model(nodes, inputs, outputs, weights) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _weights(shapes: dict[str, tuple[int, ...]], zero, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    for name, columns in zero:
        weights[name][..., columns] = 0
    return weights


def fused(heads: int = 2, c: int = 8, ffn: int = 6, zero=(), seed: int = 0) -> onnx.ModelProto:
    """x [2, T, c] and mask [2, T] -> Attention -> MatMul wo -> SkipLN(x) -> FFN -> y [2, T, c].

    ``qkv`` [c, 3c] holds Q, K, V columns side by side; head ``h`` owns columns
    ``h*c/heads .. (h+1)*c/heads`` of each.
    """
    shapes = {
        "qkv": (c, 3 * c), "qkv_bias": (3 * c,), "wo": (c, c), "gamma": (c,), "beta": (c,),
        "bo": (c,), "w1": (c, ffn), "b1": (ffn,), "w2": (ffn, c),
    }  # fmt: skip
    weights = _weights(shapes, zero, seed)
    nodes = [
        helper.make_node("ReduceSum", ["mask", "axes"], ["mask_index"], keepdims=0),
        helper.make_node("Cast", ["mask_index"], ["mask_i32"], to=TensorProto.INT32),
        helper.make_node(
            "Attention", ["x", "qkv", "qkv_bias", "mask_i32"], ["a"], domain=MS, num_heads=heads
        ),
        helper.make_node("MatMul", ["a", "wo"], ["p"]),
        helper.make_node(
            "SkipLayerNormalization", ["p", "x", "gamma", "beta", "bo"], ["n"], domain=MS
        ),
        helper.make_node("MatMul", ["n", "w1"], ["h"]),
        helper.make_node("FastGelu", ["h", "b1"], ["g"], domain=MS),
        helper.make_node("MatMul", ["g", "w2"], ["y"]),
    ]
    weights["axes"] = np.array([1], np.int64)
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, T, c]),
        helper.make_tensor_value_info("mask", TensorProto.INT64, [2, T]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, T, c])]
    return _model(nodes, inputs, outputs, weights)


def fused_feeds(c: int = 8) -> dict[str, np.ndarray]:
    """Inputs of ``fused``: the second sequence has its last two positions masked."""
    rng = np.random.default_rng(1)
    mask = np.ones((2, T), np.int64)
    mask[1, -2:] = 0
    return {"x": rng.standard_normal((2, T, c)).astype(np.float32), "mask": mask}


def split(
    op: str = "MultiHeadAttention",
    heads: int = 2,
    kv: int = 2,
    width: int = 8,
    c: int = 16,
    zero=(),
    seed: int = 0,
    packed: bool = False,
    rotary: str = "",
) -> onnx.ModelProto:
    """x [1, T, c] -> MatMul wq, wk, wv -> ``op`` -> MatMul wo -> y [1, T, c].

    Heads of ``width`` channels: Q has ``heads`` of them, K and V ``kv`` (``kv == heads`` for
    ``MultiHeadAttention``, which also takes a bias [3 * heads * width] and a key padding mask).
    ONNX Runtime's CPU ``GroupQueryAttention`` wants heads of a multiple of 8 channels.
    ``packed`` (``GroupQueryAttention``): one MatMul ``wqkv`` [c, q + 2k] makes Q, K and V side
    by side, the op's input 0. ``rotary``: which of ``q``, ``k``, ``v`` a ``RotaryEmbedding``
    (``num_heads`` set, whole heads rotated) turns by position first.
    """
    q, k = heads * width, kv * width
    shapes = {"wq": (c, q), "wk": (c, k), "wv": (c, k), "wo": (q, c), "bias": (3 * q,)}
    if packed:
        shapes = {"wqkv": (c, q + 2 * k), "wo": (q, c)}
    weights = _weights(shapes, zero, seed)
    projections = ["wqkv"] if packed else ["wq", "wk", "wv"]  # making qkv, or q, k and v
    nodes = [helper.make_node("MatMul", ["x", w], [w[1:]]) for w in projections]
    for name in rotary:  # q, k or v renamed to its rotated form
        count = heads if name == "q" else kv
        for node in nodes:
            node.output[0] = f"{name}0" if node.output[0] == name else node.output[0]
        nodes.append(
            helper.make_node(
                "RotaryEmbedding", [f"{name}0", "pos", "cos", "sin"], [name], domain=MS,
                num_heads=count, rotary_embedding_dim=width,
            )
        )  # fmt: skip
    if rotary:
        angles = np.arange(T)[:, None] * np.arange(1, width // 2 + 1)[None, :] / width
        weights.update(cos=np.cos(angles).astype(np.float32), sin=np.sin(angles).astype(np.float32))
        weights["pos"] = np.arange(T, dtype=np.int64)[None]
    if op == "MultiHeadAttention":
        ins = ["q", "k", "v", "bias", "mask_i32"]
        nodes.append(helper.make_node("Cast", ["mask"], ["mask_i32"], to=TensorProto.INT32))
        attrs = {"num_heads": heads}
    else:
        weights.pop("bias", None)
        weights["seqlens"] = np.array([T - 1], np.int32)
        weights["total"] = np.array(T, np.int32)
        ins = ["qkv" if packed else "q", *(["", ""] if packed else ["k", "v"])]
        ins += ["", "", "seqlens", "total"]
        attrs = {"num_heads": heads, "kv_num_heads": kv}
    nodes.append(helper.make_node(op, ins, ["a"], domain=MS, **attrs))
    nodes.append(helper.make_node("MatMul", ["a", "wo"], ["y"]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, c])]
    if op == "MultiHeadAttention":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT64, [1, T]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, c])]
    return _model(nodes, inputs, outputs, weights)


def split_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Inputs of a ``split`` model (a key padding mask hiding the last position)."""
    c = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, T, c)).astype(np.float32)}
    if len(model.graph.input) > 1:
        feeds["mask"] = np.array([[1] * (T - 1) + [0]], np.int64)
    return feeds


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def num_heads(model: onnx.ModelProto) -> list[tuple[int, ...]]:
    """``num_heads`` (and ``kv_num_heads``) of every contrib attention node, in graph order."""
    found = []
    for node in model.graph.node:
        if node.domain == MS and "Attention" in node.op_type:
            attrs = {a.name: a.i for a in node.attribute}
            found.append(tuple(attrs[k] for k in ("num_heads", "kv_num_heads") if k in attrs))
    return found
