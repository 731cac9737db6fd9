"""Reshapes that merge or split the axes before the unit axis: ``[B, T, C] -> [B*T, C]`` and back.

Exporters wrap a Linear layer of a sequence model so (GPT-2's ``Conv1D`` is ``addmm`` on the
flattened batch and time axes): ``Reshape [B, T, C] -> [B*T, C]``, ``Gemm``, ``Reshape`` back.
When the unit axis and every axis after it come out unchanged, each element keeps its place
along them (row-major order), so the output holds the input's units, one for one. The target's
entry for the unit axis is the unit count (rewritten to the kept count), ``-1`` (inferred, left
as it is) or ``0`` where it copies the very same input axis.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Space
from onnxprune.structured.ops._common import attr, input_at, pass_through, set_dim


def regroup_leading(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Reshape or Flatten that only merges or splits the axes before ``xs``'s.

    Returns False (nothing done) for any other reshape; blocks ``xs`` when the reshape is one
    but its target cannot follow the units (computed at run time, or copying the unit axis
    into another place).
    """
    shape_in, shape_out = b.shape(node.input[0]), b.shape(node.output[0])
    axis = _leading_only(shape_in, shape_out, xs)
    flatten_at = attr(node, "axis", 1) % xs.rank if node.op_type == "Flatten" else xs.axis
    if axis is None or flatten_at != xs.axis:
        return False
    target = input_at(node, 1) if node.op_type == "Reshape" else ""
    value = b.const(target) if target else None
    if target and value is None:
        b.block(xs, why=b.computed(f"target shape {target!r}"))
        return True
    if value is not None and not _follows(value, axis, xs.axis, attr(node, "allowzero", 0)):
        b.block(xs, why=f"target shape {value.tolist()} does not keep the unit axis")
        return True
    pass_through(b, node, xs, keeps=True, axis=axis, rank=len(shape_out))
    if value is not None and value[axis] > 0:
        shared = None if b.owned(target) else node
        b.edits.append(set_dim(target, axis, node.output[0], value, node=shared))
    return True


def _leading_only(shape_in: tuple | None, shape_out: tuple | None, xs: Space) -> int | None:
    """The unit axis of the output when only the axes before ``xs.axis`` change, else None."""
    if shape_in is None or shape_out is None or xs.inner or len(shape_in) != xs.rank:
        return None
    tail = tuple(shape_in[xs.axis :])
    axis = len(shape_out) - len(tail)
    if axis < 1 or xs.axis < 1 or None in tail or tuple(shape_out[axis:]) != tail:
        return None
    return axis


def _follows(target: np.ndarray, axis: int, axis_in: int, allowzero: int) -> bool:
    """Target entries keep following the units once some go.

    Entry ``axis`` is a positive size (rewritten), ``-1``, or ``0`` copying the input's unit
    axis; no other ``0`` copies the unit axis somewhere else.
    """
    target = target.reshape(-1)
    if allowzero and (target == 0).any():
        return False
    zeros = set(np.flatnonzero(target == 0).tolist())
    return axis_in not in zeros - {axis} and (target[axis] != 0 or axis == axis_in)
