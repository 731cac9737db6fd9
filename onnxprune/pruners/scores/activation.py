"""Activation-aware score: |w| times the L2 norm of the input unit it multiplies.

The weight ``W[i, j]`` of a layer multiplies input unit ``j``; its score is
``|W[i, j]| * ||X_j||_2``, the norm taken over every calibration sample and every other position
(batch, spatial, sequence). This is the metric of Wanda (Sun et al., "A Simple and Effective
Pruning Approach for Large Language Models", arXiv 2306.11695, eq. 1), used here for every
Conv, ConvTranspose, Gemm and MatMul layer.

The inputs of the layers are read by running the model in ONNX Runtime with them added as graph
outputs, in batches so memory stays bounded by one batch of activations.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from onnxprune._ort import create_session
from onnxprune.errors import DatasetError, InvalidOptionError
from onnxprune.graph.build import ConnectivityGraph, Layer
from onnxprune.model import PROTOBUF_LIMIT, save_model
from onnxprune.pruners.registry import ScoreContext, score

BATCH_SIZE = 64
"""Calibration samples per ONNX Runtime call (a model with a fixed batch size uses that)."""


@score("activation", "|w| times the L2 norm of its input over calibration data (Wanda, 2306.11695)")
def activation(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Importance = ``|w|`` times the L2 norm of the input unit the weight multiplies.

    Units: channels of a convolution input (over batch and spatial positions), elements of the
    contracted axis of a Gemm/MatMul input (over every other axis). A weight stored once and used
    by several layers gets the norm over all the inputs it multiplies.

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
        for layer in _layers_named(ctx.graph, name):
            total = total + expand_to_weight(squares[layer.x, _unit_axis(layer)], layer, w.shape)
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
) -> dict[tuple[str, int], np.ndarray]:
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
        contracted axis (counted from the end) of a matmul input.
    """
    wanted = {
        (layer.x, _unit_axis(layer)) for name in names for layer in _layers_named(graph, name)
    }
    feeds = check_calibration(model, graph.inputs, calibration)
    total = next((array.shape[0] for array in feeds.values()), 1)
    step = _batch_size(model, graph.inputs, total) or batch_size
    fetch = sorted({tensor for tensor, _ in wanted if tensor not in feeds})
    session = _session_with_outputs(model, fetch, provider) if fetch else None
    sums: dict[tuple[str, int], np.ndarray] = {}
    for batch in _batches(feeds, total, step):
        values = dict(batch)
        if session is not None:
            values.update(zip(fetch, session.run(fetch, batch), strict=True))
        for tensor, axis in wanted:
            part = _unit_sum_of_squares(values[tensor], axis)
            sums[tensor, axis] = sums[tensor, axis] + part if (tensor, axis) in sums else part
    return sums


def expand_to_weight(units: np.ndarray, layer: Layer, shape: tuple[int, ...]) -> np.ndarray:
    """A vector over the input units of ``layer``, broadcast to its consumed weight ``shape``.

    Conv ``[O, C/G, *k]``: output channel ``o`` of group ``g = o // (O/G)`` reads input channels
    ``g * C/G + local``. ConvTranspose ``[C, O/G, *k]``: input channels along axis 0. Matmul
    ``[K, N]``, or ``[N, K]`` when ``w_transposed``: input units along ``K``.
    """
    contract = layer.contract
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


def check_calibration(
    model: onnx.ModelProto,
    inputs: Sequence[str],
    calibration: Mapping[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """The calibration arrays for the graph ``inputs``, checked against what the model declares.

    Raises:
        DatasetError: no data, a graph input without an array, a dtype, rank or fixed dimension
            that differs from the model's, no samples, or inputs with different sample counts.
    """
    declared = {i.name: i for i in model.graph.input}
    wants = ", ".join(_describe(declared[name]) for name in inputs)
    if calibration is None:
        raise DatasetError(
            f"the activation score needs calibration data; none given (wants {wants})"
        )
    feeds = {}
    for name in inputs:
        if name not in calibration:
            given = ", ".join(sorted(calibration)) or "nothing"
            raise DatasetError(f"calibration data has no {name!r} (given: {given}; wants {wants})")
        feeds[name] = _checked(name, np.asarray(calibration[name]), declared[name])
    counts = {name: array.shape[0] for name, array in feeds.items()}
    if len(set(counts.values())) > 1:
        raise DatasetError(f"calibration inputs have different sample counts: {counts}")
    if 0 in counts.values():
        raise DatasetError("calibration data has no samples (axis 0 has length 0)")
    return feeds


def _checked(name: str, array: np.ndarray, info: onnx.ValueInfoProto) -> np.ndarray:
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        return array
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    given = f"calibration {name!r} is {array.dtype}{list(array.shape)}"
    if array.dtype != dtype:
        raise DatasetError(f"{given}; the model wants {_describe(info)}")
    if not tensor_type.HasField("shape"):
        return array
    dims = tensor_type.shape.dim
    if array.ndim != len(dims) or array.ndim == 0:
        raise DatasetError(f"{given}; the model wants rank {len(dims)}: {_describe(info)}")
    for axis, dim in enumerate(dims):
        if axis > 0 and dim.HasField("dim_value") and array.shape[axis] != dim.dim_value:
            raise DatasetError(f"{given}; the model wants {_describe(info)}")
    return array


def _describe(info: onnx.ValueInfoProto) -> str:
    """``x: float32[N, 4]``."""
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        return info.name
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    if not tensor_type.HasField("shape"):
        return f"{info.name}: {dtype}"
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?"
        for d in tensor_type.shape.dim
    ]
    return f"{info.name}: {dtype}[{', '.join(dims)}]"


def _batch_size(model: onnx.ModelProto, inputs: Sequence[str], total: int) -> int | None:
    """The fixed batch size of the model's inputs, or ``None`` when axis 0 is free."""
    fixed = {
        i.type.tensor_type.shape.dim[0].dim_value
        for i in model.graph.input
        if i.name in inputs
        and i.type.tensor_type.shape.dim
        and i.type.tensor_type.shape.dim[0].HasField("dim_value")
    }
    if not fixed:
        return None
    size = min(fixed)
    if len(fixed) > 1 or total % size:
        raise DatasetError(
            f"the model has a fixed batch size {sorted(fixed)} and the calibration data "
            f"{total} samples; give a multiple of {size}"
        )
    return size


def _batches(
    feeds: Mapping[str, np.ndarray], total: int, size: int
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, total, size):
        yield {name: array[start : start + size] for name, array in feeds.items()}


def _session_with_outputs(model: onnx.ModelProto, tensors: Sequence[str], provider: str):
    """A session on a copy of ``model`` that also returns ``tensors`` (IR and opsets kept)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    # Untyped outputs: ONNX Runtime infers their types, and no shape inference is needed.
    copy.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in existing)
    if copy.ByteSize() < PROTOBUF_LIMIT:
        return create_session(copy.SerializeToString(), provider)[0]
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as folder:
        path = Path(folder) / "model.onnx"
        save_model(copy, path, external_data_threshold=0)
        return create_session(path, provider)[0]


def _unit_sum_of_squares(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum of ``x**2`` over every axis but ``axis``, in float64."""
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    return np.einsum("ij,ij->i", flat, flat)


def _unit_axis(layer: Layer) -> int:
    """The axis of the layer's input that holds its input units."""
    return 1 if layer.contract.kind in ("conv", "conv_transpose") else layer.contract.x_axis


def _layers_named(graph: ConnectivityGraph, name: str) -> list[Layer]:
    layers = [layer for layer in graph.layers if layer.name == name]
    if not layers:
        raise InvalidOptionError(f"weight {name!r} is not a prunable layer of the model")
    return layers


def _check_units(units: np.ndarray, expected: int, layer: Layer) -> None:
    if units.shape != (expected,):
        raise ValueError(
            f"layer {layer.name!r} input has {units.shape[0]} units, its weight wants {expected}"
        )
