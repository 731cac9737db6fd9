"""Helpers the op handlers share: attributes, padding, zero filters, pass-through spaces."""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.weights import attr

NAN = np.nan


def input_at(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def padded(node: onnx.NodeProto) -> bool:
    auto = attr(node, "auto_pad", b"NOTSET")
    return any(attr(node, "pads", [0])) or auto not in (b"NOTSET", b"VALID")


def rows_zero(w: np.ndarray, axis: int) -> np.ndarray:
    """Per unit along ``axis``: all its weights are zero."""
    return ~np.moveaxis(w != 0, axis, 0).reshape(w.shape[axis], -1).any(axis=1)


def bias_ok(b: Builder, name: str, n: int) -> bool:
    """``name`` (may be empty) is a bias of ``n`` entries this node alone reads, or absent."""
    if not name:
        return True
    value = b.const(name)
    return value is not None and value.size == n and b.owned(name)


def used_extra(b: Builder, node: onnx.NodeProto) -> bool:
    """A second output (Dropout's mask, MaxPool's indices, BN's statistics) is read."""
    return any(o and b.uses[o] for o in node.output[1:])


def pass_through(b: Builder, node: onnx.NodeProto, xs: Space, keeps: bool, **like):
    """The output holds ``xs``'s units; their constants survive (``keeps``) or only zeros do."""
    out = node.output[0]
    b.alias(out, xs, **like)

    def rule(consts, arrays, pending):
        c = consts[xs.tensor]
        consts[out] = c if keeps else np.where(c == 0, c, NAN)

    b.rules.append(rule)


def reshape_target(
    b: Builder, node: onnx.NodeProto, xs: Space, axes: tuple[int, ...]
) -> tuple[str, np.ndarray | None]:
    """A Reshape's target and its value; None (and ``xs`` blocked) when it cannot follow.

    It cannot when computed at run time, or when an entry at ``axes`` is 0: it would copy an
    input size the units change.
    """
    target = input_at(node, 1)
    value = b.const(target)
    if value is None:
        b.block(xs, why=b.computed(f"target shape {target!r}"))
        return target, None
    value = value.reshape(-1)
    if (value[[a for a in axes if a < value.size]] == 0).any():
        b.block(xs, why=f"target shape {value.tolist()} copies the unit axis")
        return target, None
    return target, value


def set_dim(
    name: str,
    index: int,
    tensor: str,
    shape: np.ndarray,
    per: int | str = 1,
    node: onnx.NodeProto | None = None,
    slot: int = 1,
):
    """Rewrite entry ``index`` of a Reshape target to the kept units of ``tensor`` (over ``per``).

    ``per`` is a number, or a tensor whose kept units divide (a repeat count: the query heads
    kept over the K/V heads kept). Entries 0 (copy the input's) and -1 (inferred) stay as they
    are. With ``node``, the target is one other nodes read too (an exporter writes one ``[-1, C]``
    for every layer) or computed at run time (``shape`` is then its static value): a changed
    value goes to a fresh initializer that only ``node`` reads (as its input ``slot``: a
    Resize's sizes are its fourth), which later edits of the same node change in place.
    """

    def edit(kept, arrays, fresh):
        if shape[index] <= 0:
            return
        copied = node is not None and node.input[slot] != name  # by an earlier edit
        own = node is None or copied
        current = node.input[slot] if copied else name
        value = (arrays[current] if own else shape).copy()
        value[index] = int(kept(tensor).sum()) // (per if isinstance(per, int) else kept(per).sum())
        if own:
            arrays[current] = value
        elif value[index] != shape[index]:
            node.input[slot] = fresh(f"{name}_{node.name or node.output[0]}")
            arrays[node.input[slot]] = value

    return edit
