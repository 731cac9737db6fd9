"""Slicing one chain: producer output units, the ops' per-unit constants, the consumer's inputs.

Weights are numpy arrays keyed by initializer name; the proto is only touched for value_info
shapes and for the Add node a bias-less MatMul consumer gets when a constant is folded into it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

import numpy as np
import onnx
from onnx import helper

from onnxprune.structured.chains import ARITH, Chain, attr

Arrays = MutableMapping[str, np.ndarray]


def out_major(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """A layer's weight with its output units first."""
    if node.op_type == "Conv" or (node.op_type == "Gemm" and attr(node, "transB", 0)):
        return w
    return w.T


def in_major(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """A layer's weight with its input features first."""
    if node.op_type == "Conv":
        return np.swapaxes(w, 0, 1)
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return w.T
    return w


def unit_constants(chain: Chain, arrays: Arrays, n: int) -> np.ndarray:
    """What each producer unit emits after the ops when its incoming weights are all zero."""
    p = chain.producer
    c = np.zeros(n)
    if p.op_type in ("Conv", "Gemm") and len(p.input) > 2 and p.input[2]:
        beta = 1.0 if p.op_type == "Conv" else attr(p, "beta", 1.0)
        c = c + beta * arrays[p.input[2]].astype(np.float64).reshape(-1)
    tensor = p.output[0]
    with np.errstate(all="ignore"):
        for node in chain.ops:
            c = _through(node, tensor, c, arrays)
            tensor = node.output[0]
    return c


def _through(node: onnx.NodeProto, tensor: str, c: np.ndarray, arrays: Arrays) -> np.ndarray:
    op = node.op_type
    if op == "Relu":
        return np.maximum(c, 0.0)
    if op == "LeakyRelu":
        return np.where(c >= 0, c, attr(node, "alpha", 0.01) * c)
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-c))
    if op == "Tanh":
        return np.tanh(c)
    if op == "BatchNormalization":
        scale, b, mean, var = (arrays[n].astype(np.float64) for n in node.input[1:5])
        return (c - mean) / np.sqrt(var + attr(node, "epsilon", 1e-5)) * scale + b
    if op in ARITH:
        first = node.input[0] == tensor
        k = arrays[node.input[1] if first else node.input[0]].astype(np.float64).reshape(-1)
        a, b = (c, k) if first else (k, c)
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a, b)
    return c  # Identity, Dropout, pooling, ReduceMean, Flatten keep a constant


def fold(
    chain: Chain,
    c: np.ndarray,
    arrays: Arrays,
    graph: onnx.GraphProto,
    owned: Callable[[str], bool],
    fresh: Callable[[str], str],
) -> bool:
    """Add the constant units' contribution ``c`` (zero elsewhere) to the consumer's bias.

    Returns False, changing nothing, when the consumer's bias cannot take it.
    """
    node = chain.consumer
    w = arrays[node.input[1]].astype(np.float64)
    features = np.repeat(c, chain.spread)
    if node.op_type == "Conv":
        delta = (w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2) * features).sum(axis=1)
        scale = 1.0
    else:
        delta = features @ in_major(node, w)
        beta = attr(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
        if beta == 0:
            return False
        scale = attr(node, "alpha", 1.0) / beta if node.op_type == "Gemm" else 1.0
    delta = delta * scale
    dtype = arrays[node.input[1]].dtype
    if node.op_type == "MatMul":
        _add_after(node, delta.astype(dtype), arrays, graph, fresh)
        return True
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if bias is None:
        name = fresh(f"{node.output[0]}_folded_bias")
        arrays[name] = delta.astype(dtype)
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = name
        return True
    b = arrays[bias]
    if not owned(bias) or b.size not in (1, delta.size):
        return False
    shape = b.shape if b.size == delta.size else delta.shape
    arrays[bias] = (b.astype(np.float64).reshape(-1) + delta).reshape(shape).astype(b.dtype)
    return True


def _add_after(
    node: onnx.NodeProto,
    delta: np.ndarray,
    arrays: Arrays,
    graph: onnx.GraphProto,
    fresh: Callable[[str], str],
) -> None:
    out = node.output[0]
    pre, const = fresh(f"{out}_unfolded"), fresh(f"{out}_folded_bias")
    arrays[const] = delta
    node.output[0] = pre
    add = helper.make_node("Add", [pre, const], [out], name=fresh(f"{node.name or out}_fold"))
    position = list(graph.node).index(node) + 1
    graph.node.insert(position, add)


def shrink(chain: Chain, keep: np.ndarray, arrays: Arrays, graph: onnx.GraphProto) -> None:
    """Keep only the units ``keep`` of the chain: producer rows, op constants, consumer inputs."""
    p, c = chain.producer, chain.consumer
    w = arrays[p.input[1]]
    rows = p.op_type == "Conv" or (p.op_type == "Gemm" and attr(p, "transB", 0))
    arrays[p.input[1]] = w[keep] if rows else w[:, keep]
    if p.op_type in ("Conv", "Gemm") and len(p.input) > 2 and p.input[2]:
        b = arrays[p.input[2]]
        if b.size == keep.size:
            arrays[p.input[2]] = b[..., keep]
    tensor = p.output[0]
    for node in chain.ops:
        if node.op_type == "BatchNormalization":
            for name in node.input[1:5]:
                arrays[name] = arrays[name][keep]
        elif node.op_type in ARITH:
            name = node.input[1] if node.input[0] == tensor else node.input[0]
            k = arrays[name]
            if k.size == keep.size and k.size > 1:
                axis = next(i for i, d in enumerate(k.shape) if d != 1)
                arrays[name] = np.compress(keep, k, axis=axis)
        tensor = node.output[0]
    features = np.repeat(keep, chain.spread)
    wc = arrays[c.input[1]]
    cols = c.op_type == "Conv" or (c.op_type == "Gemm" and attr(c, "transB", 0))
    arrays[c.input[1]] = wc[:, features] if cols else wc[features]
    _reshape_value_info(chain, int(keep.sum()), graph)


def _reshape_value_info(chain: Chain, n: int, graph: onnx.GraphProto) -> None:
    infos = {vi.name: vi for vi in graph.value_info}
    for tensor, axis, spread in chain.tensors:
        vi = infos.get(tensor)
        if vi is None or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > (axis if axis >= 0 else -axis - 1) and dims[axis].HasField("dim_value"):
            dims[axis].dim_value = n * spread
