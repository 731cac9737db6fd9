"""Convolution geometry shared by both reachability levels.

Which kernel taps can touch real (non-padding) input, and which positions each tap meets.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from onnxprune.graph.transfers import Contract


def tap_validity(
    contract: Contract,
    kernel: Sequence[int],
    x_spatial: Sequence[int] | None,
    y_spatial: Sequence[int] | None,
) -> np.ndarray:
    """Boolean array of ``kernel``'s shape: taps that connect some real input to some output.

    Without static spatial sizes every tap counts as valid (conservative).
    """
    if x_spatial is None or y_spatial is None:
        return np.ones(tuple(kernel), dtype=bool)
    n = len(kernel)
    masks = []
    for i in range(n):
        s, d, pb = contract.strides[i], contract.dilations[i], contract.pads[i]
        k = np.arange(kernel[i])[:, None]
        if contract.kind == "conv":
            pos = np.arange(y_spatial[i])[None, :] * s + k * d - pb
            masks.append(((pos >= 0) & (pos < x_spatial[i])).any(axis=1))
        else:  # conv_transpose: input i writes output i*s + k*d - pb
            pos = np.arange(x_spatial[i])[None, :] * s + k * d - pb
            masks.append(((pos >= 0) & (pos < y_spatial[i])).any(axis=1))
    valid = masks[0]
    for m in masks[1:]:
        valid = np.multiply.outer(valid, m)
    return valid.reshape(tuple(kernel))


def conv_edges(
    contract: Contract, pattern: np.ndarray, valid: np.ndarray
) -> sp.csr_matrix | np.ndarray:
    """Input-unit x output-unit counts of the nonzero valid taps of each channel pair.

    ``pattern`` is the weight's nonzero pattern. Without groups the result is a dense array (a
    small fraction of the weight's size); grouped and depthwise convolutions give scipy.sparse,
    whose dense form would be mostly empty blocks.
    """
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


def matmul_edges(contract: Contract, pattern: np.ndarray) -> np.ndarray:
    """Input-unit x output-unit boolean pattern of a matmul weight, as a dense [K, N] array.

    Dense on purpose: a boolean pattern costs a quarter of the float32 weight it comes from, and
    pushing vectors through it needs no index arrays (csr would take 12 bytes per nonzero).
    """
    return pattern.T if contract.w_transposed else pattern


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
