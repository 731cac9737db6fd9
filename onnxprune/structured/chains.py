"""Chains the surgery can shrink: a layer, the element-wise ops after it, the next layer.

A chain is ``producer -> ops... -> consumer`` where the producer is a Conv (group 1), Gemm or 2-D
MatMul, the ops map its output units one to one (activations, BatchNormalization, per-channel
Add/Sub/Mul/Div with a constant, pooling, and one Flatten or spatial ReduceMean from a conv to a
dense layer), and the consumer is the next Conv/Gemm/MatMul reading the chain as its input. Every
intermediate tensor has exactly one reader and is no graph output, and every weight the surgery
slices is an initializer no other node reads. Anything else (residual Add, Concat, unknown ops) ends
no chain, so its units are left alone: correct but conservative.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

UNARY = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Identity", "Dropout"}
"""Element-wise ops with one input whose constant output is computed from a constant input."""
ARITH = {"Add", "Sub", "Mul", "Div"}
POOL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}


@dataclass(frozen=True)
class Chain:
    """Units of ``producer``'s output flow one to one through ``ops`` into ``consumer``.

    Attributes:
        producer: the layer whose output units may be removed.
        ops: the nodes in between, in order.
        consumer: the layer whose input units are removed with them.
        spread: consumer input features per producer unit (a Flatten's spatial size, else 1).
        constant_ok: a unit emitting a constant gives the consumer a constant contribution
            (no padding or padded averaging on the way), so it can be folded into its bias.
        tensors: (tensor, unit axis, features per unit) of every tensor between the two layers.
    """

    producer: onnx.NodeProto
    ops: tuple[onnx.NodeProto, ...]
    consumer: onnx.NodeProto
    spread: int
    constant_ok: bool
    tensors: tuple[tuple[str, int, int], ...]


def attr(node: onnx.NodeProto, name: str, default):
    """The value of attribute ``name`` of ``node``, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def find_chains(
    graph: onnx.GraphProto, arrays: Mapping[str, np.ndarray], shapes: Mapping[str, tuple]
) -> list[Chain]:
    """Every chain of ``graph``; ``arrays`` are its initializers, ``shapes`` inferred shapes."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    uses: Counter[str] = Counter()
    for node in graph.node:
        for name in node.input:
            if name:
                readers.setdefault(name, []).append(node)
                uses[name] += 1
    outputs = {o.name for o in graph.output}
    for vi in graph.input:  # an initializer that is also an input keeps its declared shape
        uses[vi.name] += 2
    ctx = _Context(arrays, uses, readers, outputs, shapes)
    chains = []
    for node in graph.node:
        if _is_layer(node, ctx) and _is_producer(node, ctx):
            chain = _follow(node, ctx)
            if chain is not None:
                chains.append(chain)
    return chains


@dataclass(frozen=True)
class _Context:
    arrays: Mapping[str, np.ndarray]
    uses: Counter[str]
    readers: Mapping[str, list[onnx.NodeProto]]
    outputs: set[str]
    shapes: Mapping[str, tuple]

    def owned(self, name: str) -> bool:
        """An initializer only one node reads."""
        return name in self.arrays and self.uses[name] == 1


def _is_layer(node: onnx.NodeProto, ctx: _Context) -> bool:
    if len(node.input) < 2 or not ctx.owned(node.input[1]) or node.input[0] in ctx.arrays:
        return False
    w = ctx.arrays[node.input[1]]
    if node.op_type == "Conv":
        return attr(node, "group", 1) == 1 and w.ndim >= 3
    if node.op_type == "Gemm":
        return attr(node, "transA", 0) == 0 and w.ndim == 2
    return node.op_type == "MatMul" and w.ndim == 2


def _is_producer(node: onnx.NodeProto, ctx: _Context) -> bool:
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2]:
        bias = node.input[2]
        if bias not in ctx.arrays:
            return False
        rows = attr(node, "transB", 0) or node.op_type == "Conv"
        n = ctx.arrays[node.input[1]].shape[0 if rows else 1]
        size = ctx.arrays[bias].size
        return size == 1 or (size == n and ctx.owned(bias))
    return True


def _sole_reader(tensor: str, ctx: _Context) -> onnx.NodeProto | None:
    found = ctx.readers.get(tensor, [])
    if tensor in ctx.outputs or len(found) != 1:
        return None
    return found[0]


def _follow(producer: onnx.NodeProto, ctx: _Context) -> Chain | None:
    conv = producer.op_type == "Conv"
    shape = ctx.shapes.get(producer.output[0])
    rank = ctx.arrays[producer.input[1]].ndim if conv else len(shape) if shape else 0
    axis = 1 if conv else -1
    tensor, spread, constant_ok = producer.output[0], 1, True
    ops: list[onnx.NodeProto] = []
    tensors = [(tensor, axis, 1)]
    while True:
        node = _sole_reader(tensor, ctx)
        if node is None or len([o for o in node.output if o]) != 1:
            return None
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            break
        step = _pass(node, tensor, conv, rank, spread, ctx)
        if step is None:
            return None
        conv, spread, keeps = step
        constant_ok = constant_ok and keeps
        axis = 1 if conv else -1
        ops.append(node)
        tensor = node.output[0]
        tensors.append((tensor, axis, spread))
    if node.input[0] != tensor or not _is_layer(node, ctx):
        return None
    if (node.op_type == "Conv") != conv:
        return None
    if conv:
        pads = attr(node, "pads", [0])
        padded = any(pads) or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
        constant_ok = constant_ok and not padded
    return Chain(producer, tuple(ops), node, spread, constant_ok, tuple(tensors))


def _pass(
    node: onnx.NodeProto, tensor: str, conv: bool, rank: int, spread: int, ctx: _Context
) -> tuple[bool, int, bool] | None:
    """(conv layout after, spread after, constant kept) for a node units pass through, or None."""
    op = node.op_type
    if op in UNARY:
        return conv, spread, True
    if spread != 1:
        return None
    if op in ARITH:
        other = [i for i in node.input if i != tensor]
        if len(node.input) != 2 or len(other) != 1 or other[0] not in ctx.arrays:
            return None
        if ctx.arrays[other[0]].size > 1 and not ctx.owned(other[0]):
            return None
        if op == "Div" and node.input[0] != tensor:
            return None
        k = ctx.arrays[other[0]]
        per_unit = k.size == 1 or channel_axis(k, conv, rank) is not None
        return (conv, 1, True) if per_unit else None
    if op == "BatchNormalization":
        if not (conv or rank == 2) or not all(ctx.owned(n) for n in node.input[1:5]):
            return None
        return conv, 1, not attr(node, "training_mode", 0)
    return _pass_conv(node, tensor, rank, ctx) if conv else None


def _pass_conv(
    node: onnx.NodeProto, tensor: str, rank: int, ctx: _Context
) -> tuple[bool, int, bool] | None:
    """Pooling, spatial ReduceMean and Flatten, which only a conv layout passes through."""
    op = node.op_type
    if op in POOL:
        pads = any(attr(node, "pads", [0])) or attr(node, "auto_pad", b"NOTSET") != b"NOTSET"
        averaging_pads = op == "AveragePool" and pads and attr(node, "count_include_pad", 0)
        return True, 1, not averaging_pads
    if op == "ReduceMean" and len(node.input) == 1:
        if sorted(int(a) % rank for a in attr(node, "axes", [])) != list(range(2, rank)):
            return None
        return bool(attr(node, "keepdims", 1)), 1, True
    if op == "Flatten" and attr(node, "axis", 1) == 1:
        shape = ctx.shapes.get(tensor)
        if shape is None or len(shape) != rank or not all(isinstance(d, int) for d in shape[2:]):
            return None
        return False, int(np.prod(shape[2:], dtype=np.int64)), True
    return None


def channel_axis(k: np.ndarray, conv: bool, rank: int) -> int | None:
    """The axis of constant ``k`` that indexes units, if ``k`` is per-unit along the chain."""
    if k.ndim > max(rank, 1):
        return None
    big = [i for i, d in enumerate(k.shape) if d != 1]
    if len(big) != 1:
        return None
    from_right = k.ndim - 1 - big[0]
    wanted = rank - 2 if conv else 0
    return big[0] if from_right == wanted else None
