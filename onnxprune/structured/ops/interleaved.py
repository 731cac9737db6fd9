"""Units merged with the axes before them, and split back: ``[B, H, T, D] -> [B*H, T, D]``.

torch's dynamo export of ``scaled_dot_product_attention`` transposes K through a rank-3 view:
``Reshape [B, H, T, D] -> [-1, T, D]``, ``Transpose [0, 2, 1]``, ``Reshape -> [B, H, D, T]``.
The first Reshape merges the heads with the batch axis before them, heads inner: index
``b*H + h`` of the merged axis holds head ``h``. In general, a Reshape that keeps every axis
after the unit axis (same sizes, at the end of the output) only regroups the axes up to it, in
row-major order: with ``L`` the element's index over those axes, its index along the input's
unit axis (``n`` long) is ``L mod n``, and along the output's last regrouped axis (``m`` long)
``L mod m``. When one length divides the other, one index fixes the other modulo the smaller:

- ``n | m`` (merged, ``[B, H] -> [B*H]``): output slot ``i`` holds input slot ``i mod n``;
- ``m | n`` (split back, ``[B*H] -> [B, H]``): output slot ``j`` holds input slots ``j``,
  ``j + m``, ... (tied: the same head of every batch).

The output gets a space of ``m`` slots, each tied to the input slots it holds, as a Flatten's
features are tied to their channels: every op follows it as any other space, and a kept count
of it is ``m / n`` times the input's. Merged slots repeat (``Space.period``), so a Reshape
splitting them back (``[B*H] -> [B, H]``) is read as this regroup, not as a split into heads
(``heads.split_heads``: ``B`` heads of ``H`` channels, which would tie every head together).

The target's entry for that axis, when a size, becomes the kept count; a ``-1`` is left to
infer (the input lost as many elements as the output); a ``0`` there or at the input's unit
axis copies a size the units change, and blocks.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.ops._common import NAN, reshape_target, set_dim


def regroup(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Reshape regrouping the axes up to ``xs``'s unit axis, the units innermost.

    Returns False (nothing done) for any other Reshape.
    """
    found = _regrouped(b, node, xs)
    if found is None:
        return False
    axis, m = found
    target, value = reshape_target(b, node, xs, (xs.axis, axis))
    if value is None:
        return True
    out = node.output[0]
    slots(b, xs, out, axis, m)
    if value[axis] > 0:
        owner = None if b.owned(target) else node  # a shared target: copied
        b.edits.append(set_dim(target, axis, out, value, node=owner))
    return True


def slots(b: Builder, xs: Space, out: str, axis: int, m: int) -> None:
    """Give ``out`` a space of ``m`` slots along ``axis``, each tied to the units it holds.

    Slot ``i`` holds ``xs``'s units ``j`` with ``i = j`` modulo the smaller count (``m`` a
    multiple or a divisor of it).

    A Tile repeating the units ``m / n`` times along their axis (DeBERTa repeats each relative
    position's heads for every sample: ``[H, P, D] -> [B*H, P, D]``) fills them as a merge with
    the batch does.
    """
    space = b.new(out, axis, len(b.shape(out)), m, period=_period(xs, m))
    k = np.arange(max(m, xs.size))
    b.tie(space, k % m, xs, k % xs.size)

    def rule(consts, arrays, pending):  # each output slot: what all its input slots hold
        c = consts[xs.tensor][k % xs.size].reshape(-1, m)
        consts[out] = np.where((c == c[:1]).all(axis=0), c[0], NAN)

    b.rules.append(rule)


def _regrouped(b: Builder, node: onnx.NodeProto, xs: Space) -> tuple[int, int] | None:
    """The output's axis holding the units and its length, or None.

    None unless ``node`` is a Reshape keeping the axes after the unit axis at the end of its
    output, with the axis before them (static) a multiple or a divisor of the unit count long.
    """
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    if node.op_type != "Reshape" or xs.inner or shape_in is None or shape_out is None:
        return None
    tail = tuple(shape_in[xs.axis + 1 :])
    axis = len(shape_out) - len(tail) - 1
    if len(shape_in) != xs.rank or shape_in[xs.axis] != xs.size or axis < 0 or None in tail:
        return None
    if tuple(shape_out[axis + 1 :]) != tail:
        return None
    m = shape_out[axis]
    if not m or (m % xs.size and xs.size % m):
        return None
    return axis, m


def _period(xs: Space, m: int) -> int:
    """The period of the output's ``m`` slots (0: none).

    Every ``n`` when they repeat ``xs``'s ``n`` units, every ``xs.period`` when that still
    divides ``m`` (and is shorter).
    """
    n = xs.period or xs.size
    return n if m % n == 0 and n < m else 0
