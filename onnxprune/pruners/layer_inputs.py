"""The inputs of prunable layers over calibration data, read in ONNX Runtime batch by batch.

Shared by the scores that look at activations: the activation score (Wanda) sums squares of
each layer's input per unit, SparseGPT accumulates each layer's Hessian ``2 X X^T``. The model
runs with the wanted tensors added as graph outputs, one batch of calibration samples at a
time, so memory stays bounded by one batch of activations. ONNX and ONNX Runtime
(``onnxprune.feeds``) are imported where they are used: the score registry imports the scores'
modules to list the methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.errors import DatasetError, InvalidOptionError
from onnxprune.runtime import run_session

if TYPE_CHECKING:
    import onnx

    from onnxprune.graph.build import ConnectivityGraph, Layer

BATCH_SIZE = 64
"""Calibration samples per ONNX Runtime call (a model with a fixed batch size uses that)."""


def calibration_batches(
    model: onnx.ModelProto,
    inputs: Sequence[str],
    calibration: Mapping[str, np.ndarray] | None,
    tensors: Sequence[str],
    *,
    batch_size: int = BATCH_SIZE,
    provider: str = "auto",
    reader: str = "calibration-based pruning",
) -> Iterator[dict[str, np.ndarray]]:
    """The calibration set in batches, each with the values of ``tensors`` computed on it.

    One ONNX Runtime session adds ``tensors`` as outputs of a copy of ``model``; memory stays
    bounded by one batch of them, whatever the size of the calibration set.

    Args:
        model: the model to run (not modified).
        inputs: its graph inputs that take data (``ConnectivityGraph.inputs``).
        calibration: arrays keyed by graph input name, samples along axis 0.
        tensors: names of tensors of ``model`` (graph inputs too) wanted per batch.
        batch_size: samples per run (a model with a fixed batch size uses that instead).
        provider: passed to ``create_session``.
        reader: who needs the data, for messages (``"the activation score"``).

    Yields:
        Per batch, the graph inputs and ``tensors`` by name.

    Raises:
        DatasetError: ``calibration`` is missing or does not fit the model's inputs, or ONNX
            Runtime fails on it.
    """
    from onnxprune.feeds import batches

    feeds = _check_calibration(model, inputs, calibration, reader)
    total = next((array.shape[0] for array in feeds.values()), 1)
    step = _batch_size(model, inputs, total) or batch_size
    fetch = sorted({tensor for tensor in tensors if tensor not in feeds})
    session = _session_with_outputs(model, fetch, provider) if fetch else None
    for batch in batches(feeds, total, step, stage="calibration"):
        values = dict(batch)
        if session is not None:
            values.update(zip(fetch, run_session(session, fetch, batch), strict=True))
        yield values


def layers_named(graph: ConnectivityGraph, name: str) -> list[Layer]:
    """Every use of the stored weight ``name`` (a weight may be shared by several layers).

    Raises:
        InvalidOptionError: ``name`` is not a prunable layer of ``graph``.
    """
    layers = [layer for layer in graph.layers if layer.name == name]
    if not layers:
        raise InvalidOptionError(f"weight {name!r} is not a prunable layer of the model")
    return layers


def unit_axis(layer: Layer) -> int:
    """The axis of the layer's input that holds its input units."""
    return 1 if layer.contract.kind in ("conv", "conv_transpose") else layer.contract.x_axis


def _check_calibration(
    model: onnx.ModelProto,
    inputs: Sequence[str],
    calibration: Mapping[str, np.ndarray] | None,
    reader: str,
) -> dict[str, np.ndarray]:
    """The calibration arrays for the graph ``inputs``, checked by ``feeds.check_feeds``."""
    from onnxprune.feeds import check_feeds, describe

    if calibration is None:
        declared = {i.name: i for i in model.graph.input}
        wants = ", ".join(describe(declared[name]) for name in inputs)
        raise DatasetError(f"{reader} needs calibration data; none given (wants {wants})")
    return check_feeds(model, inputs, calibration, "calibration data")


def _batch_size(model: onnx.ModelProto, inputs: Sequence[str], total: int) -> int | None:
    """The fixed batch size of the model's inputs, or ``None`` when axis 0 is free."""
    from onnxprune.feeds import fixed_batch_size

    size = fixed_batch_size(model, inputs)
    if size is not None and total % size:
        raise DatasetError(
            f"the model has a fixed batch size {size} and the calibration data "
            f"{total} samples; give a multiple of {size}"
        )
    return size


def _session_with_outputs(model: onnx.ModelProto, tensors: Sequence[str], provider: str):
    """A session on a copy of ``model`` that also returns ``tensors`` (IR and opsets kept)."""
    import onnx

    from onnxprune.feeds import session_for

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    # Untyped outputs: ONNX Runtime infers their types, and no shape inference is needed.
    copy.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in existing)
    return session_for(copy, provider)[0]
