"""A prunable layer as matrix products ``W X``: weight rows = outputs, input columns = samples.

What SparseGPT (``pruners.obs``) works on. Each group of a layer is one product:

- Gemm/MatMul, weight consumed as ``[K, N]`` (``[N, K]`` when ``w_transposed``): one product,
  ``W`` ``[N, K]``; the samples of ``X`` ``[K, samples]`` are every position of the input but
  the contracted axis (``Contract.x_axis``: batch, sequence, ``transA`` handled alike).
- Conv, weight ``[O, C/G, *k]``: one product per group, ``W`` ``[O/G, taps * C/G]``; ``X`` is
  the im2col view of the input (``graph.conv_geometry.im2col``), one sample per image and output
  position. Columns are ordered tap-major (all channels of tap 0, then tap 1, ...), so a run of
  M consecutive columns is M input channels at one tap, the N:M pattern of ``pruners.nm``.
- ConvTranspose, weight ``[C, O/G, *k]``: the same per group, ``W`` ``[O/G, taps * C/G]``; a
  column holds, for one output position, the input value each tap scatters there (or zero).

``output_rows`` names the output unit of every weight of any layer (Wanda's
comparison groups).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxprune.graph.build import Layer

CHUNK_BYTES = 1 << 26
"""Largest float64 im2col block built at once (64 MiB): images are taken a few at a time."""


def weight_rows(layer: Layer, w: np.ndarray) -> list[np.ndarray]:
    """The consumed weight ``w`` as one ``[rows, cols]`` matrix per group (copies)."""
    contract = layer.contract
    if contract.kind == "matmul":
        return [np.array(w if contract.w_transposed else w.T)]
    if contract.kind == "conv_transpose":  # [C, O/G, *k] -> per group [O/G, taps * C/G]
        channels, out, groups = w.shape[0], w.shape[1], contract.group
        taps = math.prod(w.shape[2:])
        split = w.reshape(groups, channels // groups, out, taps).transpose(0, 2, 3, 1)
        return list(np.array(split).reshape(groups, out, taps * (channels // groups)))
    out, per_group, groups = w.shape[0], w.shape[1], contract.group
    taps = math.prod(w.shape[2:])
    tapwise = w.reshape(out, per_group, taps).transpose(0, 2, 1).reshape(out, taps * per_group)
    return list(np.array(tapwise).reshape(groups, out // groups, taps * per_group))


def weight_from_rows(
    layer: Layer, rows: Sequence[np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    """The inverse of :func:`weight_rows`: per-group matrices back in the consumed ``shape``."""
    contract = layer.contract
    if contract.kind == "matmul":
        return np.array(rows[0] if contract.w_transposed else rows[0].T)
    if contract.kind == "conv_transpose":
        groups, out, taps = contract.group, shape[1], math.prod(shape[2:])
        split = np.stack(list(rows)).reshape(groups, out, taps, shape[0] // groups)
        return split.transpose(0, 3, 1, 2).reshape(shape)
    out, per_group, taps = shape[0], shape[1], math.prod(shape[2:])
    stacked = np.concatenate(list(rows)).reshape(out, taps, per_group)
    return stacked.transpose(0, 2, 1).reshape(shape)


def output_rows(layer: Layer, shape: tuple[int, ...]) -> np.ndarray:
    """The output unit each weight of the consumed ``shape`` feeds (int64, shaped like it).

    Matmul ``[K, N]``: column ``n`` (row ``n`` of ``[N, K]`` when ``w_transposed``); Conv
    ``[O, C/G, *k]``: output channel ``o``; ConvTranspose ``[C, O/G, *k]``: output channel
    ``g * O/G + o`` of input channel ``c``'s group ``g``; recurrent ``W``/``R`` ``[D, G*H, n]``:
    the gate row ``(d, r)``, each gate of each unit and direction its own output.
    """
    contract = layer.contract
    grid = np.indices(shape, sparse=True)
    if contract.kind == "recurrent":
        out = grid[0] * shape[1] + grid[1]
    elif contract.kind == "matmul":
        out = grid[0] if contract.w_transposed else grid[1]
    elif contract.kind == "conv":
        out = grid[0]
    else:
        per_group = shape[0] // max(contract.group, 1)
        out = (grid[0] // per_group) * shape[1] + grid[1]
    return np.broadcast_to(out, shape).astype(np.int64)


def input_columns(
    layer: Layer, x: np.ndarray, y_spatial: Sequence[int] | None = None
) -> Iterator[list[np.ndarray]]:
    """The layer's input ``x`` (one batch) as float64 ``[cols, samples]`` per group, in chunks.

    Args:
        layer: the layer.
        x: a batch of its input.
        y_spatial: the spatial size of its output; needed for a ConvTranspose (its output size
            also depends on ``output_padding`` and ``output_shape``).

    Yields:
        Lists with one matrix per group, the samples of a few images each, so that one chunk
        stays under ``CHUNK_BYTES``.
    """
    contract = layer.contract
    if contract.kind == "matmul":
        moved = np.moveaxis(np.asarray(x), contract.x_axis, 0)
        yield [moved.reshape(moved.shape[0], -1).astype(np.float64)]
        return
    kernel = tuple(layer.shape[2:])
    transposed = contract.kind == "conv_transpose"
    outer = tuple(y_spatial) if transposed else _conv_output(layer, x.shape[2:])
    per_image = x.shape[1] * math.prod(kernel) * math.prod(outer) * 8
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    for start in range(0, x.shape[0], step):
        part = np.asarray(x[start : start + step], np.float64)
        if transposed:
            yield _scattered(layer, part, kernel, outer)
        else:
            yield [_tapwise(c, math.prod(kernel)) for c in _im2col(layer, part, kernel, outer)]


def _scattered(
    layer: Layer, x: np.ndarray, kernel: tuple[int, ...], outer: tuple[int, ...]
) -> list[np.ndarray]:
    """The columns of a ConvTranspose: per group ``[taps * C/G, N * P]``, tap-major.

    Input position ``i`` and tap ``k`` reach output position ``i * s + k * d - begin``: for
    each tap the input is written at its stride into a padded output and cropped, so column
    ``(tap, c)`` at output ``p`` holds the input value that tap brings there (or zero).
    """
    from onnxprune.graph.conv_geometry import padded_size, taps

    c = layer.contract
    begins = c.pads[: len(kernel)]
    size = padded_size(kernel, c.strides, c.dilations, x.shape[2:], begins, outer)
    inside = (..., *(slice(b, b + m) for b, m in zip(begins, outer, strict=True)))
    written = []
    for index in taps(kernel, c.strides, c.dilations, x.shape[2:]):
        full = np.zeros(x.shape[:2] + size)
        full[(..., *index)] = x
        written.append(full[inside].reshape(x.shape[0], x.shape[1], -1))
    n, channels, groups = x.shape[0], x.shape[1], c.group
    stacked = np.stack(written).reshape(len(written), n, groups, channels // groups, -1)
    per_group = stacked.transpose(2, 0, 3, 1, 4)  # [G, taps, C/G, N, P]
    return list(per_group.reshape(groups, len(written) * (channels // groups), -1))


def _im2col(layer: Layer, x: np.ndarray, kernel: tuple[int, ...], outer: tuple[int, ...]):
    from onnxprune.graph.conv_geometry import im2col

    return im2col(layer.contract, x, kernel, outer)


def _tapwise(columns: np.ndarray, taps: int) -> np.ndarray:
    """im2col rows ordered channel-major ``(c, tap)`` reordered tap-major ``(tap, c)``."""
    per_group = columns.shape[0] // taps
    return columns.reshape(per_group, taps, -1).transpose(1, 0, 2).reshape(columns.shape[0], -1)


def _conv_output(layer: Layer, spatial: Sequence[int]) -> tuple[int, ...]:
    """Output spatial size of a convolution over an input of ``spatial`` size (ONNX Conv)."""
    c, kernel = layer.contract, layer.shape[2:]
    n = len(kernel)
    return tuple(
        (size + c.pads[i] + c.pads[n + i] - c.dilations[i] * (kernel[i] - 1) - 1) // c.strides[i]
        + 1
        for i, size in enumerate(spatial)
    )
