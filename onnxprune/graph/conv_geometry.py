"""Convolution geometry and the linear maps of windows and layers, shared by every level.

Which kernel taps can touch real (non-padding) input, and which positions each tap meets; im2col
and its adjoint; sums over pooling windows; and convolutions and matrix products of a map with a
weight, forward, backward and for the weight. The maps are plain sums in the dtype of the arrays
given: the exact level passes 0/1 maps and thresholds at zero (a bool sum is an OR), SynFlow
passes real values.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.graph.transfers import Contract, Window

if TYPE_CHECKING:
    import scipy.sparse as sp

MAX_POSITIONS = 2**24
"""Largest spatial size whose positions ``tap_validity`` lays out one by one."""


def tap_validity(
    contract: Contract,
    kernel: Sequence[int],
    x_spatial: Sequence[int] | None,
    y_spatial: Sequence[int] | None,
) -> np.ndarray:
    """Boolean array of ``kernel``'s shape: taps that connect some real input to some output.

    Without static spatial sizes, or with sizes of more than ``MAX_POSITIONS`` (a shape a
    model merely declares), every tap counts as valid (conservative).
    """
    if x_spatial is None or y_spatial is None or max(*x_spatial, *y_spatial, 0) > MAX_POSITIONS:
        return np.ones(tuple(kernel), dtype=bool)
    n = len(kernel)
    masks = []
    for i in range(n):
        s, d, pb = contract.strides[i], contract.dilations[i], contract.pads[i]
        if contract.kind == "conv":
            hits = in_bounds(kernel[i], s, d, pb, x_spatial[i], y_spatial[i])
        else:  # conv_transpose: input i writes output i*s + k*d - pb
            hits = in_bounds(kernel[i], s, d, pb, y_spatial[i], x_spatial[i])
        masks.append(hits.any(axis=1))
    valid = masks[0]
    for m in masks[1:]:
        valid = np.multiply.outer(valid, m)
    return valid.reshape(tuple(kernel))


def in_bounds(
    kernel: int, stride: int, dilation: int, begin: int, inner: int, outer: int
) -> np.ndarray:
    """[kernel, outer] bool along one axis: tap ``k`` at step ``o`` lands inside the map.

    The tap reads position ``o * stride + k * dilation - begin`` of a map of ``inner`` positions.
    """
    pos = np.arange(outer)[None, :] * stride + np.arange(kernel)[:, None] * dilation - begin
    return (pos >= 0) & (pos < inner)


def resolve_pads(
    auto_pad: str | bytes,
    pads: Sequence[int] | None,
    spatial: Sequence[int | None] | None,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[int, ...] | None:
    """ONNX ``pads`` (begins then ends) with ``auto_pad`` resolved.

    ``None`` when SAME padding needs the input's spatial sizes (``spatial``) and they are
    unknown: with a stride above 1 the total pad depends on the size modulo the stride. With
    stride 1 on every axis it is ``(kernel - 1) * dilation`` whatever the size, so a SAME
    convolution of a symbolic-size image (PP-OCRv6's detector stem, 2x2 SAME_UPPER) stays a layer.
    Convolution and pooling pad alike.
    """
    n = len(kernel)
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", "VALID"):
        return tuple(pads) if pads and auto_pad == "NOTSET" else (0,) * (2 * n)
    if (spatial is None or None in spatial) and all(s == 1 for s in strides):
        spatial = (1,) * n  # any size: out = size, total = (k - 1) * d
    if spatial is None or None in spatial:
        return None
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else total - small)
        ends.append(total - begins[-1])
    return (*begins, *ends)


def conv_edges(
    contract: Contract, pattern: np.ndarray, valid: np.ndarray
) -> sp.csr_matrix | np.ndarray:
    """Input-unit x output-unit counts of the nonzero valid taps of each channel pair.

    ``pattern`` is the weight's nonzero pattern. Without groups the result is a dense array (a
    small fraction of the weight's size); grouped and depthwise convolutions give scipy.sparse,
    whose dense form would be mostly empty blocks.
    """
    import scipy.sparse as sp  # here: SynFlow imports this module, and never needs scipy

    counts = tap_counts(pattern if valid.all() else pattern & valid)
    a, b = counts.shape  # conv: [O, C/G]; conv_transpose: [C, O/G]
    g = contract.group
    if g == 1:
        return counts.T if contract.kind == "conv" else counts
    rows, cols = np.nonzero(counts)
    data = counts[rows, cols].astype(np.int64)
    if contract.kind == "conv":
        out_units, local_in = rows, cols
        in_units = (out_units // (a // g)) * b + local_in
        return sp.csr_matrix((data, (in_units, out_units)), shape=(b * g, a))
    in_units, local_out = rows, cols
    out_units = (in_units // (a // g)) * b + local_out
    return sp.csr_matrix((data, (in_units, out_units)), shape=(a, b * g))


def tap_counts(pattern: np.ndarray) -> np.ndarray:
    """Number of True taps per channel pair of a boolean [A, B, *kernel] pattern."""
    a, b = pattern.shape[:2]
    per_tap = pattern.view(np.uint8).reshape(a, b, -1)
    n_taps = per_tap.shape[2]
    # Adding tap slices is several times faster than a reduction over a short last axis.
    counts = per_tap[..., 0].astype(np.uint8 if n_taps < 256 else np.int64)
    for tap in range(1, n_taps):
        counts += per_tap[..., tap]
    return counts


def taps(
    kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], outer: Sequence[int]
) -> Iterator[tuple[slice, ...]]:
    """For each kernel tap (in C order), the slice of the padded map it meets at ``outer`` steps.

    For a convolution or pooling window ``outer`` is the output's spatial size and the slice is
    read from the padded input; for a transposed convolution ``outer`` is the input's spatial size
    and the slice is written into the padded output.
    """
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield tuple(
            slice(t * d, t * d + s * (n - 1) + 1, s)
            for t, d, s, n in zip(tap, dilations, strides, outer, strict=True)
        )


def padded_size(
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    outer: Sequence[int],
    begins: Sequence[int],
    inner: Sequence[int],
) -> tuple[int, ...]:
    """Extent of a padded map that holds ``inner`` at offset ``begins`` and every tap slice."""
    return tuple(
        max(s * (n - 1) + (k - 1) * d + 1, b + m)
        for k, s, d, n, b, m in zip(kernel, strides, dilations, outer, begins, inner, strict=True)
    )


# --- broadcasting --------------------------------------------------------------------------------


def unbroadcast(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of broadcasting a tensor of ``shape`` to ``b.shape``: ``b`` summed back.

    Sums in ``b``'s dtype, so a bool map is OR-ed.
    """
    lead = b.ndim - len(shape)
    b = b.sum(axis=tuple(range(lead)), dtype=b.dtype) if lead else b
    axes = tuple(
        i for i, (n, m) in enumerate(zip(shape, b.shape, strict=True)) if n == 1 and m != 1
    )
    return b.sum(axis=axes, keepdims=True, dtype=b.dtype) if axes else b


# --- windows (pooling, LRN) ----------------------------------------------------------------------


def _window_geometry(t: Window, inner: tuple[int, ...], outer: tuple[int, ...]):
    n = len(t.axes)
    begins = t.pads[:n]
    size = padded_size(t.kernel, t.strides, t.dilations, outer, begins, inner)
    inside = tuple(slice(b, b + m) for b, m in zip(begins, inner, strict=True))
    return size, inside


def window_sum(t: Window, x: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """Sum of ``x`` over each window of ``t`` (padding reads zeros), in ``x``'s dtype."""
    axes = tuple(a % x.ndim for a in t.axes)
    moved = np.moveaxis(x, axes, range(-len(axes), 0))
    outer = tuple(out_shape[a] for a in axes)
    size, inside = _window_geometry(t, moved.shape[-len(axes) :], outer)
    padded = np.zeros(moved.shape[: -len(axes)] + size, x.dtype)
    padded[(..., *inside)] = moved
    out = np.zeros(moved.shape[: -len(axes)] + outer, x.dtype)
    for index in taps(t.kernel, t.strides, t.dilations, outer):
        out += padded[(..., *index)]
    return np.moveaxis(out, range(-len(axes), 0), axes)


def window_sum_adjoint(t: Window, b: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of ``window_sum``: each input element gets the sum of its windows' ``b``."""
    axes = tuple(a % b.ndim for a in t.axes)
    moved = np.moveaxis(b, axes, range(-len(axes), 0))
    inner = tuple(in_shape[a] for a in axes)
    outer = moved.shape[-len(axes) :]
    size, inside = _window_geometry(t, inner, outer)
    padded = np.zeros(moved.shape[: -len(axes)] + size, b.dtype)
    for index in taps(t.kernel, t.strides, t.dilations, outer):
        padded[(..., *index)] += moved
    return np.moveaxis(padded[(..., *inside)], range(-len(axes), 0), axes)


# --- prunable layers -----------------------------------------------------------------------------
#
# ``w`` is a layer's weight in the layout the node consumes, as the values to multiply by (a 0/1
# pattern or |w| * mask); maps are computed in float32 or wider (bool maps become float32).


def _float(*arrays: np.ndarray) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays), np.float32)


def contract_forward(
    c: Contract, w: np.ndarray, x: np.ndarray, out_shape: tuple[int, ...], *, binary: bool = False
) -> np.ndarray:
    """The layer applied to the map ``x`` of its input: a map of ``out_shape``.

    With ``binary`` the result is only whether each sum is positive (a bool map).
    """
    if c.kind == "matmul":
        y = _through_matmul(x, w.T if c.w_transposed else w, c.x_axis, c.y_axis, out_shape)
    elif c.kind == "conv":
        y = _conv_apply(c, w, im2col(c, x, w.shape[2:], out_shape[2:]), out_shape)
    else:
        cols = _conv_adjoint(c, w, x, binary)
        return col2im(c, cols, out_shape, w.shape[2:], x.shape[2:])
    return y > 0 if binary else y


def contract_backward(
    c: Contract, w: np.ndarray, b: np.ndarray, in_shape: tuple[int, ...], *, binary: bool = False
) -> np.ndarray:
    """The adjoint of ``contract_forward``: the map ``b`` of the output pulled to the input."""
    if c.kind == "matmul":
        x = _through_matmul(b, w if c.w_transposed else w.T, c.y_axis, c.x_axis, in_shape)
    elif c.kind == "conv":
        cols = _conv_adjoint(c, w, b, binary)
        return col2im(c, cols, in_shape, w.shape[2:], b.shape[2:])
    else:
        x = _conv_apply(c, w, im2col(c, b, w.shape[2:], in_shape[2:]), in_shape)
    return x > 0 if binary else x


def contract_weight_grad(
    c: Contract,
    x: np.ndarray,
    y: np.ndarray,
    w_shape: tuple[int, ...],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """For each weight entry, the sum over positions of input map times output map at its tap.

    With ``x`` the forward map of the input and ``y`` the backward map of the output this is
    the gradient of the output's weighted sum with respect to the weight (consumed layout).
    The products are written into ``out`` (C-contiguous, ``w_shape``) when given, so a caller
    that scores every round reuses one buffer.
    """
    dtype = _float(x, y)
    if out is None:
        out = np.empty(w_shape, dtype)
    if c.kind == "matmul":
        k_units, n_units = (w_shape[1], w_shape[0]) if c.w_transposed else w_shape
        xm = np.moveaxis(x, c.x_axis, -1).reshape(-1, k_units).astype(dtype, copy=False)
        ym = np.moveaxis(y, c.y_axis, -1).reshape(-1, n_units).astype(dtype, copy=False)
        return np.matmul(*((ym.T, xm) if c.w_transposed else (xm.T, ym)), out=out)
    if c.kind == "conv":  # cols read from the input map
        cols = im2col(c, x, w_shape[2:], y.shape[2:])
        rows = by_group(y, c.group, dtype)
    else:  # conv_transpose: cols read from the output map
        cols = im2col(c, y, w_shape[2:], x.shape[2:])
        rows = by_group(x, c.group, dtype)
    per_group = out.reshape(c.group, w_shape[0] // c.group, -1)
    for r, k, o in zip(rows, cols, per_group, strict=True):
        np.matmul(r, k.T, out=o)
    return out


def _moved_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Shape after ``np.moveaxis(a, axis, -1)`` on an array of ``shape``."""
    axis %= len(shape)
    return (*shape[:axis], *shape[axis + 1 :], shape[axis])


def _through_matmul(
    m: np.ndarray, w: np.ndarray, src_axis: int, dst_axis: int, dst_shape: tuple[int, ...]
) -> np.ndarray:
    """Push a map through a [src units, dst units] matrix along the given axes."""
    moved = np.moveaxis(m, src_axis, -1).reshape(-1, w.shape[0]).astype(_float(m, w), copy=False)
    out = moved @ w
    return np.moveaxis(out.reshape(_moved_shape(dst_shape, dst_axis)), -1, dst_axis)


def _conv_apply(c: Contract, w: np.ndarray, cols: list[np.ndarray], out_shape) -> np.ndarray:
    """Kernel times im2col columns, per group: a map of ``out_shape`` = [N, O, *sp]."""
    per_group = w.reshape(c.group, w.shape[0] // c.group, -1)
    y = np.concatenate([p @ k for p, k in zip(per_group, cols, strict=True)])
    return np.moveaxis(y.reshape(out_shape[1], out_shape[0], *out_shape[2:]), 0, 1)


def _conv_adjoint(c: Contract, w: np.ndarray, m: np.ndarray, binary: bool) -> list[np.ndarray]:
    """Kernel transposed times the map's rows, per group: columns for ``col2im``.

    With ``binary`` the columns are bool (positive or not), so ``col2im`` ORs them.
    """
    per_group = w.reshape(c.group, w.shape[0] // c.group, -1)
    rows = by_group(m, c.group, _float(m, w))
    cols = [p.T @ r for p, r in zip(per_group, rows, strict=True)]
    return [k > 0 for k in cols] if binary else cols


def by_group(m: np.ndarray, group: int, dtype: np.dtype) -> list[np.ndarray]:
    """Map [N, C, *sp] -> per group [C/G, N * P] rows of ``dtype``."""
    ch = m.shape[1]
    flat = np.moveaxis(m, 1, 0).reshape(group, ch // group, -1)
    return [g.astype(dtype, copy=False) for g in flat]


def im2col(
    c: Contract, m: np.ndarray, kernel: tuple[int, ...], outer: tuple[int, ...]
) -> list[np.ndarray]:
    """im2col of a map: per group [C/G * taps, N * P] (float32 or wider), padded by ``c.pads``."""
    n_sp = len(kernel)
    begins = c.pads[:n_sp]
    inner = m.shape[2:]
    size = padded_size(kernel, c.strides, c.dilations, outer, begins, inner)
    padded = np.zeros(m.shape[:2] + size, _float(m))
    padded[(..., *(slice(b, b + k) for b, k in zip(begins, inner, strict=True)))] = m
    moved = np.moveaxis(padded, 1, 0)  # [C, N, *padded]
    cols = np.stack([moved[(..., *i)] for i in taps(kernel, c.strides, c.dilations, outer)], 1)
    ch = m.shape[1]
    return list(cols.reshape(c.group, (ch // c.group) * cols.shape[1], -1))


def col2im(
    c: Contract,
    cols: list[np.ndarray],
    shape: tuple[int, ...],
    kernel: tuple[int, ...],
    outer: tuple[int, ...],
) -> np.ndarray:
    """The adjoint of ``im2col``: columns summed back onto a map of ``shape`` = [N, C, *sp].

    Sums in the columns' dtype: bool columns are OR-ed.
    """
    n_sp = len(kernel)
    begins = c.pads[:n_sp]
    inner = shape[2:]
    size = padded_size(kernel, c.strides, c.dilations, outer, begins, inner)
    n, ch = shape[:2]
    n_taps = int(np.prod(kernel))
    stacked = np.concatenate(cols).reshape(ch, n_taps, n, *outer)
    padded = np.zeros((ch, n, *size), stacked.dtype)
    for tap, index in enumerate(taps(kernel, c.strides, c.dilations, outer)):
        padded[(..., *index)] += stacked[:, tap]
    inside = padded[(..., *(slice(b, b + k) for b, k in zip(begins, inner, strict=True)))]
    return np.moveaxis(inside, 0, 1)
