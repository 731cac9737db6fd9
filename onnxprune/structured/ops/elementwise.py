"""Element-wise ops: activations, arithmetic with per-unit constants, residual sums, norms."""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.graph.registry import OPS, op_key
from onnxprune.structured.groups import Builder, Slice, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, attr, bias_ok, input_at, used_extra


@handler("activation")
def _unary(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    if xs is None or any(b.space(i) for i in node.input[1:]) or used_extra(b, node):
        b.block(xs)
        return
    out = node.output[0]
    b.alias(out, xs)
    fn = OPS[node.op_type].constants[node.op_type]
    b.rules.append(
        lambda consts, arrays, pending: consts.__setitem__(out, fn(consts[xs.tensor], node))
    )


@handler("biased_activation")
def _biased(b: Builder, node: onnx.NodeProto) -> None:
    """An activation of the input plus a per-unit bias (input 1, if any) along the last axis."""
    xs, bias = b.space(node.input[0]), input_at(node, 1)
    value = b.const(bias)
    fits = not bias or (bias_ok(b, bias, xs.size) and value.ndim == 1 and xs.axis == xs.rank - 1)
    if xs is None or not fits or used_extra(b, node):
        b.block(xs)
        return
    out = node.output[0]
    b.alias(out, xs)
    if bias:
        b.slices.append(Slice(bias, 0, out))
    key = op_key(node.op_type, node.domain)
    fn = OPS[key].constants[key]

    def rule(consts, arrays, pending):
        shift = arrays[bias].astype(np.float64) if bias else 0.0
        consts[out] = fn(consts[xs.tensor] + shift, node)

    b.rules.append(rule)


@handler("clip")
def _clip(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    bounds = [input_at(node, i) for i in (1, 2)]
    values = [b.const(name) if name else np.array(NAN) for name in bounds]
    if xs is None or any(v is None or v.size != 1 for v in values) or used_extra(b, node):
        b.block(xs)
        return
    lo = attr(node, "min", -np.inf) if not bounds[0] else float(values[0].reshape(()))
    hi = attr(node, "max", np.inf) if not bounds[1] else float(values[1].reshape(()))
    out = node.output[0]
    b.alias(out, xs)
    b.rules.append(
        lambda consts, arrays, pending: consts.__setitem__(out, np.clip(consts[xs.tensor], lo, hi))
    )


def unit_axis(k: np.ndarray, axis: int, rank: int, size: int) -> int | None:
    """The axis of constant ``k`` (broadcast against ``rank`` axes) holding one value per unit."""
    big = [i for i, d in enumerate(k.shape) if d != 1]
    if k.ndim > rank or len(big) != 1 or k.shape[big[0]] != size:
        return None
    return big[0] if rank - k.ndim + big[0] == axis else None


def _across_units(shape: tuple | None, axis: int, rank: int) -> bool:
    """A tensor of ``shape``, broadcast against ``rank`` axes, is one value along ``axis``."""
    if shape is None or len(shape) > rank:
        return False
    index = axis - (rank - len(shape))
    return index < 0 or shape[index] == 1


def _bias_map(
    b: Builder, node: onnx.NodeProto, name: str, first: Space, rank: int, slices: list
) -> bool:
    """Follow a constant that varies along the unit axis and others too, sliced along the units'.

    T5's relative position bias ``[1, H, T, T]`` (folded by the dynamo exporter) is added to
    the scores of every layer: each head has a map of its own. A constant only this node reads
    is sliced with the output's units (appended to ``slices``); one that only element-wise
    nodes read gets a space of its own, sliced once, and its units are tied to every reader's:
    head ``h`` goes from all of them or from none. Returns False for any other constant.
    """
    k = b.const(name)
    index = first.axis - (rank - k.ndim)
    if k.ndim > rank or index < 0 or k.shape[index] != first.size:
        return False
    if b.owned(name):
        slices.append(Slice(name, index, node.output[0]))
        return True
    readers = [n for n in b.graph.node if name in n.input]
    family = OPS.get(op_key(node.op_type, node.domain))
    alike = all(OPS.get(op_key(n.op_type, n.domain)) is family for n in readers)
    if len(readers) != b.uses[name] or not alike or b.why_not_owned(name) is None:
        return False
    space = b.space(name)
    if space is None:
        space = b.new(name, index, k.ndim, first.size)
        b.slices.append(Slice(name, index, name))
        b.rules.append(
            lambda consts, arrays, pending: consts.__setitem__(name, np.full(space.size, NAN))
        )
    b.tie(first, np.arange(first.size), space, np.arange(space.size))
    return True


def _unfit(b: Builder, name: str, k: np.ndarray | None) -> str:
    """Why input ``name`` (its constant value ``k``, or None) of an element-wise node blocks.

    It varies along the units' axis without holding units that can be followed: a constant
    shaped otherwise than one value per unit, or one other nodes read too; a tensor computed
    by a node that does not carry the units (a post-norm residual sum adds the previous
    LayerNormalization's output; BLOOM adds its ALiBi bias, computed from the attention mask).
    """
    if k is not None:
        shared = b.why_not_owned(name, "constant")
        return shared or f"constant {name!r} of shape {list(k.shape)} does not fit the units"
    if b.shape(name) is None:
        return f"input {name!r} has an unknown shape{b.unfixed()}"
    origin = _origin(b, name)
    source = (
        f"{origin.op_type} node {origin.name or origin.output[0]!r}" if origin else "a graph input"
    )
    return f"input {name!r} varies along the units' axis without carrying them (from {source})"


def _origin(b: Builder, name: str) -> onnx.NodeProto | None:
    """The node where computed ``name`` comes from, back through element-wise arithmetic.

    A residual stream that no node carries units through is a chain of sums: its origin (a
    LayerNormalization) is what holds the units back. None for a graph input.
    """
    producers = {out: n for n in b.graph.node for out in n.output}
    node = producers.get(name)
    while node is not None and OPS.get(op_key(node.op_type, node.domain)) is OPS["Add"]:
        computed = [i for i in node.input if i and b.const(i) is None and b.space(i) is None]
        if not computed:
            break
        node = producers.get(computed[0])
    return node


@handler("arithmetic")
def _binary(b: Builder, node: onnx.NodeProto) -> None:
    spaces = [b.space(name) for name in node.input]
    first = next(s for s in spaces if s is not None)
    rank = b.rank(node.output[0])
    same = all(
        s is None or (s.size == first.size and s.axis == first.axis and s.rank == rank)
        for s in spaces
    )
    parts = []  # per input: a space tensor name, or a per-unit (or scalar) constant
    slices = []
    why = None  # why an input cannot be followed
    for name, space in zip(node.input, spaces, strict=True):
        k = b.const(name)
        owned = k is not None and rank and b.owned(name)
        axis = unit_axis(k, first.axis, rank, first.size) if owned else None
        if space is not None:
            parts.append(name)
        elif k is not None and k.size == 1:
            parts.append(k.astype(np.float64).reshape(()))
        elif axis is not None:
            slices.append(Slice(name, axis, node.output[0]))
            parts.append(name)
        elif rank and _across_units(k.shape if k is not None else b.shape(name), first.axis, rank):
            parts.append(np.array(NAN))  # the same for every unit (a mask, rotary angles)
        elif k is not None and rank and _bias_map(b, node, name, first, rank, slices):
            parts.append(np.array(NAN))  # varies within each unit
        else:
            same, why = False, _unfit(b, name, k)
            break
    if not same or not rank or used_extra(b, node):
        for s in spaces:
            b.block(s, why=why)
        return
    out = node.output[0]
    b.alias(out, first)
    b.slices.extend(slices)
    for s in spaces:
        if s is not None and s.base != first.base:
            b.tie(first, np.arange(first.size), s, np.arange(s.size))
    fn = OPS[node.op_type].constants[node.op_type]

    def rule(consts, arrays, pending):
        values = [
            p if not isinstance(p, str) else consts[p] if p in consts else arrays[p].reshape(-1)
            for p in parts
        ]
        values = [np.broadcast_to(np.asarray(v, np.float64), (first.size,)) for v in values]
        consts[out] = fn(np.stack(values))

    b.rules.append(rule)


@handler("layer_norm")
def _layer_norm(b: Builder, node: onnx.NodeProto) -> None:
    """LayerNormalization (RMSNormalization) blocks what it reads.

    Over the units' axis each output depends on every unit: a transformer's model width stays
    whole, and the reason says why.
    """
    xs = b.space(node.input[0])
    start = attr(node, "axis", -1) % xs.rank if xs is not None else 0
    over = xs is not None and xs.axis >= start
    for name in node.input:
        b.block(b.space(name), why="it normalizes over the units' axis" if over else None)


@handler("batch_norm", "instance_norm")
def _norm(b: Builder, node: onnx.NodeProto) -> None:
    xs = b.space(node.input[0])
    params = list(node.input[1:5] if node.op_type == "BatchNormalization" else node.input[1:3])
    owned = all(b.owned(p) and b.const(p).ndim == 1 and b.const(p).size == xs.size for p in params)
    rank_ok = xs.axis == 1 and (xs.rank >= 3 or node.op_type == "BatchNormalization")
    if not owned or not rank_ok or used_extra(b, node) or attr(node, "training_mode", 0):
        b.block(xs)
        return
    out = node.output[0]
    b.alias(out, xs)
    b.slices.extend(Slice(p, 0, out) for p in params)
    eps = attr(node, "epsilon", 1e-5)

    def rule(consts, arrays, pending):
        c = consts[xs.tensor]
        v = [arrays[p].astype(np.float64) for p in params]
        if len(v) == 2:  # instance norm: a constant channel normalizes to its shift
            consts[out] = np.where(np.isfinite(c), v[1], NAN)
        else:
            consts[out] = (c - v[2]) / np.sqrt(v[3] + eps) * v[0] + v[1]

    b.rules.append(rule)
