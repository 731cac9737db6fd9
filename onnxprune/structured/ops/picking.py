"""Units picked along their axis: a Slice of a range of them, a Gather or GatherND of some.

Falcon's multi-query attention splits its fused projection into heads, ``[B, T, H + 2, D]``,
then takes the query heads with ``Slice [0:-2]`` on the heads axis and its one K and one V head
with ``Gather`` of ``[-2]`` and ``[-1]`` (the dynamo exporter brings the heads axis first with a
``Transpose`` and picks with ``GatherND`` of ``[[-2]]``). The output's units are the picked
ones, each tied to the unit it copies; when units go, the Slice's bounds and the indices are
rewritten to the new places of the units kept. A Gather or GatherND along other axes than the
units' (a sequence position, BERT's ``[CLS]`` token) passes the units through.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.structured.groups import Builder, Slice, Space
from onnxprune.structured.handlers import handler
from onnxprune.structured.ops._common import NAN, attr, input_at, pass_through
from onnxprune.weights import sliced


def slice_units(b: Builder, node: onnx.NodeProto, xs: Space) -> bool:
    """Follow a Slice of consecutive units (constant bounds, step 1) along ``xs``'s axis.

    Returns False (nothing done) for a Slice with attributes (before opset 10), a bound
    computed at run time or a step other than 1 there.
    """
    if b.opset < 10 or xs.inner or xs.period:
        return False
    names = [input_at(node, i) for i in range(1, 5)]
    values = [b.const(name) if name else None for name in names]
    if any(name and value is None for name, value in zip(names, values, strict=True)):
        return False
    entry, step, picked = sliced(values, xs.rank, xs.axis, xs.size)  # the caller saw it cut
    if step != 1:
        return False
    _picked(b, node, xs, xs.axis, picked)
    first, last = (int(picked[0]), int(picked[-1]) + 1) if picked.size else (0, 0)
    starts, ends = _rewriter(b, node, 1), _rewriter(b, node, 2)

    def edit(kept, arrays, fresh):
        units = kept(xs.tensor)
        if units.all():
            return
        start = int(units[:first].sum())
        end = start + int(units[first:last].sum())
        starts(arrays, fresh, lambda v: _at(v, entry, start))
        ends(arrays, fresh, lambda v: _at(v, entry, end))

    b.edits.append(edit)
    return True


@handler("gather", layer=True)
def _gather(b: Builder, node: onnx.NodeProto) -> None:
    """Gather along the unit axis with constant 1-D indices, or along any other axis.

    Rows of a stored table (an embedding, T5's position buckets) make units of its columns.
    """
    xs, indices = b.space(node.input[0]), b.const(node.input[1])
    b.block(b.space(node.input[1]), why="its indices hold units")
    if xs is None and b.space(node.input[1]) is None:
        _rows(b, node)
        return
    index_rank = b.rank(node.input[1])
    if xs is None or xs.inner or index_rank is None:
        b.block(xs)
        return
    axis = attr(node, "axis", 0) % xs.rank
    if axis != xs.axis:  # positions picked along another axis: the units stay whole
        out_axis = xs.axis if xs.axis < axis else xs.axis + index_rank - 1
        pass_through(b, node, xs, keeps=True, axis=out_axis, rank=xs.rank + index_rank - 1)
        return
    if indices is None or indices.ndim != 1 or xs.period or not _in_range(indices, xs.size):
        b.block(xs, why="it picks units by indices it cannot rewrite")
        return
    _pick_by_index(b, node, xs, xs.axis, indices % xs.size, lambda new: new)


def _rows(b: Builder, node: onnx.NodeProto) -> None:
    """Rows of a table ``[rows, units]`` only this Gather reads: its columns are units.

    The output's last axis holds the table's columns, sliced with them.

    T5 gathers its position bias per head from a bucket table ``[buckets, H]`` and adds it to
    every layer's scores: the heads go with their columns. Anything else (shape arithmetic,
    a table shared with a tied head) makes no units.
    """
    name, out = node.input[0], node.output[0]
    table, rank = b.const(name), b.rank(out)
    if table is None or table.ndim != 2 or table.dtype.kind != "f" or not rank:
        return
    if attr(node, "axis", 0) % 2 or not b.owned(name):
        return
    b.new(out, rank - 1, rank, table.shape[1])
    b.slices.append(Slice(name, 1, out))

    def rule(consts, arrays, pending):  # a column of one value throughout: that value
        t = arrays[name].astype(np.float64)
        consts[out] = np.where((t == t[:1]).all(axis=0), t[0], NAN)

    b.rules.append(rule)


@handler("gather_nd")
def _gather_nd(b: Builder, node: onnx.NodeProto) -> None:
    """GatherND (``batch_dims`` 0, constant indices) picking units, or positions before them.

    Index tuples of length ``q`` address the first ``q`` axes. Units past them pass through;
    units on axis 0 picked by ``[n, 1]`` indices become ``n`` units.
    """
    xs, indices = b.space(node.input[0]), b.const(node.input[1])
    b.block(b.space(node.input[1]), why="its indices hold units")
    if xs is None or xs.inner or indices is None or attr(node, "batch_dims", 0):
        b.block(xs)
        return
    q, rank = indices.shape[-1], indices.ndim
    if xs.axis >= q:
        pass_through(
            b, node, xs, keeps=True, axis=xs.axis - q + rank - 1, rank=xs.rank - q + rank - 1
        )
        return
    if (q, rank, xs.axis) != (1, 2, 0) or xs.period or not _in_range(indices, xs.size):
        b.block(xs, why="it picks units by indices it cannot rewrite")
        return
    _pick_by_index(b, node, xs, 0, indices[:, 0] % xs.size, lambda new: new.reshape(-1, 1))


def _pick_by_index(b, node, xs: Space, axis: int, picked: np.ndarray, shaped) -> None:
    """The output holds units ``picked`` of ``xs`` at ``axis``; the indices follow the kept ones.

    ``shaped`` gives the kept units' new indices the shape of the node's index input.
    """
    _picked(b, node, xs, axis, picked)
    indices = _rewriter(b, node, 1)

    def edit(kept, arrays, fresh):
        units = kept(xs.tensor)
        if units.all():
            return
        place = np.cumsum(units) - 1  # each kept unit's index once the others are gone
        new = shaped(place[picked[units[picked]]])
        indices(arrays, fresh, lambda v: new.astype(v.dtype))

    b.edits.append(edit)


def _picked(b: Builder, node: onnx.NodeProto, xs: Space, axis: int, picked: np.ndarray) -> None:
    """A space for the node's output at ``axis``: one unit per entry of ``picked``, tied to it."""
    out = node.output[0]
    space = b.new(out, axis, b.rank(out) or xs.rank, picked.size)
    b.tie(space, np.arange(picked.size), xs, picked)
    b.rules.append(
        lambda consts, arrays, pending: consts.__setitem__(out, consts[xs.tensor][picked])
    )


def _in_range(indices: np.ndarray, size: int) -> bool:
    return bool(((indices >= -size) & (indices < size)).all())


def _at(value: np.ndarray, entry: int, new: int) -> np.ndarray:
    """``value`` with entry ``entry`` set to ``new``."""
    value = value.reshape(-1).copy()
    value[entry] = new
    return value


def _rewriter(b: Builder, node: onnx.NodeProto, position: int):
    """An edit step setting the node's constant input at ``position`` to ``change(value)``.

    A constant other nodes read too (the dynamo exporter stores one ``[0]`` for every Slice)
    is copied first, for this node alone.
    """
    name, owned = node.input[position], b.owned(node.input[position])

    def rewrite(arrays, fresh, change) -> None:
        current = node.input[position]
        new = change(arrays[current])
        if owned or current != name:  # its own, or the copy an earlier edit made
            arrays[current] = new
            return
        node.input[position] = fresh(f"{name}_{node.name or node.output[0]}")
        arrays[node.input[position]] = new

    return rewrite
