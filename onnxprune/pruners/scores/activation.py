"""Activation-aware score: |w| times the L2 norm of the input unit it multiplies.

The weight ``W[i, j]`` of a layer multiplies input unit ``j``; its score is
``|W[i, j]| * ||X_j||_2``, the norm taken over every calibration sample and every other position
(batch, spatial, sequence). This is the metric of Wanda (Sun et al., "A Simple and Effective
Pruning Approach for Large Language Models", arXiv 2306.11695, eq. 1), used here for every
Conv, ConvTranspose, Gemm and MatMul layer.

The inputs of the layers are read in ONNX Runtime in batches (``pruners.layer_inputs``), so
memory stays bounded by one batch of activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.pruners.layer_inputs import (
    BATCH_SIZE,
    calibration_batches,
    layers_named,
    unit_axis,
)
from onnxprune.pruners.registry import ScoreContext, score

if TYPE_CHECKING:
    import onnx

    from onnxprune.graph.build import ConnectivityGraph, Layer


@score(
    "activation",
    "|w| times the L2 norm of its input over calibration data, per output row (Wanda, 2306.11695)",
    calibrated=True,
    per_output=True,
)
def activation(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Importance = ``|w|`` times the L2 norm of the input unit the weight multiplies.

    Units: channels of a convolution input (over batch and spatial positions), elements of the
    contracted axis of a Gemm/MatMul input (over every other axis), features of an LSTM/GRU/RNN
    input for its ``W`` and hidden units (per direction, over every step of ``Y``) for its
    ``R`` (which multiplies the previous step's: ``Y`` stands for them). A weight stored once
    and used by several layers gets the norm over all the inputs it multiplies.

    Args:
        weights: arrays in the layout the layers consume, keyed by layer name.
        ctx: needs ``model``, ``graph`` and ``calibration`` (arrays keyed by graph input name,
            samples along axis 0).

    Returns:
        float64 scores keyed like ``weights``.

    Raises:
        DatasetError: ``ctx.calibration`` is missing or does not fit the model's inputs.
        InvalidOptionError: a key of ``weights`` is not a layer of ``ctx.graph``.
    """
    squares = input_sum_of_squares(ctx.model, ctx.graph, ctx.calibration, list(weights))
    out = {}
    for name, w in weights.items():
        magnitude = np.abs(np.asarray(w, dtype=np.float64))
        total = np.zeros_like(magnitude)
        for layer in layers_named(ctx.graph, name):
            key = layer.x, _unit_axes(ctx.graph, layer)
            total = total + expand_to_weight(squares[key], layer, w.shape)
        out[name] = magnitude * np.sqrt(total)
    return out


def input_sum_of_squares(
    model: onnx.ModelProto,
    graph: ConnectivityGraph,
    calibration: Mapping[str, np.ndarray] | None,
    names: Sequence[str],
    *,
    batch_size: int = BATCH_SIZE,
    provider: str = "auto",
) -> dict[tuple[str, int | tuple[int, ...]], np.ndarray]:
    """Sum of squares of each named layer's input per input unit, over the calibration set.

    Args:
        model: the model to run (not modified).
        graph: its connectivity graph (where the layers' inputs are found).
        calibration: arrays keyed by graph input name, samples along axis 0.
        names: layer names whose inputs are wanted.
        batch_size: samples per run (a model with a fixed batch size uses that instead).
        provider: passed to ``create_session``.

    Returns:
        float64 vectors keyed by ``(tensor, axis)``: axis 1 of a convolution input, the
        contracted axis (counted from the end) of a matmul input, the (direction, hidden)
        axes of a recurrent layer's hidden states.
    """
    wanted = {
        (layer.x, _unit_axes(graph, layer)) for name in names for layer in layers_named(graph, name)
    }
    sums: dict[tuple[str, int | tuple[int, ...]], np.ndarray] = {}
    tensors = sorted({tensor for tensor, _ in wanted})
    run = calibration_batches(
        model,
        graph.inputs,
        calibration,
        tensors,
        batch_size=batch_size,
        provider=provider,
        reader="the activation score",
    )
    for values in run:
        for tensor, axis in wanted:
            part = _unit_sum_of_squares(values[tensor], axis)
            sums[tensor, axis] = sums[tensor, axis] + part if (tensor, axis) in sums else part
    return sums


def expand_to_weight(units: np.ndarray, layer: Layer, shape: tuple[int, ...]) -> np.ndarray:
    """A vector over the input units of ``layer``, broadcast to its consumed weight ``shape``.

    Conv ``[O, C/G, *k]``: output channel ``o`` of group ``g = o // (O/G)`` reads input channels
    ``g * C/G + local``. ConvTranspose ``[C, O/G, *k]``: input channels along axis 0. Matmul
    ``[K, N]``, or ``[N, K]`` when ``w_transposed``: input units along ``K``. Recurrent ``W``
    ``[D, G*H, I]``: features along the last axis; ``R`` ``[D, G*H, H]``: the ``D * H`` hidden
    units along the first and last.
    """
    contract = layer.contract
    if contract.kind == "recurrent":
        recurrence = contract.weight == 2
        _check_units(units, shape[0] * shape[-1] if recurrence else shape[-1], layer)
        view = (shape[0], 1, shape[-1]) if recurrence else (1, 1, shape[-1])
        return np.broadcast_to(units.reshape(view), shape)
    if contract.kind == "conv":
        out_channels, per_group, groups = shape[0], shape[1], contract.group
        _check_units(units, groups * per_group, layer)
        group_of = np.arange(out_channels) // (out_channels // groups)
        spread = units.reshape(groups, per_group)[group_of]
        return np.broadcast_to(spread.reshape(*spread.shape, *(1,) * (len(shape) - 2)), shape)
    if contract.kind == "conv_transpose":
        _check_units(units, shape[0], layer)
        return np.broadcast_to(units.reshape(-1, *(1,) * (len(shape) - 1)), shape)
    axis = 1 if contract.w_transposed else 0
    _check_units(units, shape[axis], layer)
    return np.broadcast_to(units[None, :] if axis else units[:, None], shape)


def _unit_sum_of_squares(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """Sum of ``x**2`` over every axis but ``axis`` (units over several axes: row-major)."""
    axes = (axis,) if isinstance(axis, int) else axis
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axes, tuple(range(len(axes))))
    flat = moved.reshape(int(np.prod(moved.shape[: len(axes)])), -1)
    return np.einsum("ij,ij->i", flat, flat)


def _unit_axes(graph: ConnectivityGraph, layer: Layer) -> int | tuple[int, ...]:
    """``unit_axis``, or for a recurrent ``R`` the (direction, hidden) axes of ``Y`` or ``Y_h``."""
    contract = layer.contract
    if contract.kind != "recurrent" or contract.weight != 2:
        return unit_axis(layer)
    from onnxprune.graph.recurrent import hidden_axes

    spec = next(s for s in graph.steps if s.node == layer.node).transfers[0]
    return hidden_axes(spec, 0 if len(graph.shapes.get(layer.x) or ()) == 4 else 1)


def _check_units(units: np.ndarray, expected: int, layer: Layer) -> None:
    if units.shape != (expected,):
        raise ValueError(
            f"layer {layer.name!r} input has {units.shape[0]} units, its weight wants {expected}"
        )
