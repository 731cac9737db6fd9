"""LSTM, GRU and RNN: hidden units go with every gate's rows, in both directions.

Unit ``j`` owns row ``g * H + j`` of ``W`` and ``R`` for every gate ``g`` (``Slice.tile``), its
entries of both biases and of the LSTM peepholes, and index ``j`` of constant initial states;
column ``j`` of ``R`` reads it like a layer's input. A bidirectional layer loses unit ``j`` in
both directions (its outputs hold ``j`` along the hidden axis, ``[..., D, B, H]``), and
``hidden_size`` is rewritten. Zeroing a unit's rows and biases holds it at zero at every step
from a zero state (its candidate stays 0: ``graph/recurrent.py``), so the masked model computes
what the cut one does. The input's features are read through ``W``'s last axis, by a consumer
that folds no constants (only input units at zero go). Initial states of zeros are dropped, not
sliced: a missing state is zero. So are those computed at run time (an exporter's ``Expand`` or
``Slice`` of 0) and a constant of zeros the layers share (the dynamo export of a stacked LSTM
gives both layers one).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxprune.graph.rules.recurrent import GATES, keeps_zero
from onnxprune.structured.groups import Builder, Consumer, Slice
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, input_at
from onnxprune.weights import ConstantResolver

_STATES = (5, 6)  # initial_h, initial_c


@handler("recurrent", layer=True)
def _recurrent(b: Builder, node: onnx.NodeProto) -> None:
    x, wname, rname = node.input[0], node.input[1], node.input[2]
    xs, w, r = b.space(x), b.const(wname), b.const(rname)
    zeros = _zero_states(b, node)
    problem = _problem(b, node, zeros)
    if problem:
        b.block(xs, why=problem)
        if w is None or r is None or w.ndim != 3 or r.ndim != 3:
            return  # no units to name: nothing follows them
    elif xs is not None and xs.axis == xs.rank - 1 and xs.size == w.shape[-1]:
        b.consumers.append(Consumer(node, wname, 2, 1, x, None, 1.0, False))
    else:
        b.block(xs)
    gates = len(GATES[node.op_type])
    outputs = [o for o in node.output if o]
    y = outputs[0]
    rank = 4 if node.output[0] == y else 3  # Y [T, D, B, H] or a state [D, B, H]
    space = b.new(y, rank - 1, rank, r.shape[-1])
    for other in outputs[1:]:
        b.alias(other, space, axis=2, rank=3)
    owned = [Slice(wname, 1, y, gates), Slice(rname, 1, y, gates)]
    bias, peepholes = input_at(node, 3), input_at(node, 7) if node.op_type == "LSTM" else ""
    if bias:
        owned.append(Slice(bias, 1, y, 2 * gates))
    states = (input_at(node, i) for i in _STATES)
    owned += [Slice(n, 2, y) for n in states if n in b.arrays and n not in zeros]
    owned = [s for s in owned if s.name in b.arrays]  # a run-time bias blocks (``_problem``)
    b.slices += owned
    b.filters += owned  # zeroed together: the unit then outputs zero
    if peepholes and not problem:
        b.slices.append(Slice(peepholes, 1, y, 3))
    if problem:
        b.block(space, why=problem)  # named in the report, never removed
    else:
        b.consumers.append(Consumer(node, rname, 2, 1, y, None, 1.0, False))
        b.edits.append(_rewrite(node, y, zeros))

    def rule(consts, arrays, pending):
        zero = np.full(space.size, not problem)  # a unit we cannot follow holds anything
        for s in owned if zero.any() else ():
            zero &= ~(s.rows(arrays[s.name]) != 0).any(axis=1)
        for name in outputs:
            consts[name] = np.where(zero, 0.0, NAN)

    b.rules.append(rule)


def _problem(b: Builder, node: onnx.NodeProto, zeros: frozenset[str]) -> str | None:
    """Why the units of this node cannot be removed, or None (``zeros``: its zero states)."""
    w, r = b.const(node.input[1]), b.const(node.input[2])
    named = [(node.input[1], "weight"), (node.input[2], "recurrence weight")]
    named += [(input_at(node, 3), "bias"), (input_at(node, 7), "peephole weight")]
    for name, what in named:
        problem = name and b.why_not_owned(name, what)
        if problem:
            return problem
    if w is None or r is None or w.ndim != 3 or r.ndim != 3:
        return "weights that are not constant 3-D tensors"
    if not keeps_zero(node, w.shape[0]):
        return "activations that do not map 0 to 0"
    for index in _STATES:
        name = input_at(node, index)
        if not name or name in zeros:
            continue
        if name not in b.arrays:
            return f"initial state {name!r} computed at run time"
        if b.why_not_owned(name, "initial state"):
            return b.why_not_owned(name, "initial state")
    return None


def _zero_states(b: Builder, node: onnx.NodeProto) -> frozenset[str]:
    """The initial states of ``node`` that hold zeros whatever the inputs (dropped, not sliced)."""
    resolver = ConstantResolver(b.graph)
    names = (input_at(node, i) for i in _STATES)
    return frozenset(n for n in names if n and resolver.is_zero(n))


def _rewrite(node: onnx.NodeProto, y: str, zeros: frozenset[str]):
    """``hidden_size`` to the kept units; zero states dropped (a missing one is zero)."""

    def edit(kept, arrays, fresh):
        size = int(kept(y).sum())
        for a in node.attribute:
            if a.name == "hidden_size":
                a.i = size
                break
        else:
            node.attribute.append(helper.make_attribute("hidden_size", size))
        for index in _STATES:
            if input_at(node, index) in zeros:
                node.input[index] = ""

    return edit
