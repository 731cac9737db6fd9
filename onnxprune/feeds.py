"""Running a model on data: input arrays checked against the graph inputs, batches, sessions.

Shared by everything that feeds data to ONNX Runtime (the activation score's calibration data,
validation datasets), so both refuse the same mistakes with the same one-line messages.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from onnxprune import progress
from onnxprune.errors import DatasetError
from onnxprune.model import PROTOBUF_LIMIT, save_model
from onnxprune.runtime import create_session


def graph_inputs(model: onnx.ModelProto) -> list[str]:
    """Names of the graph inputs that need data (initializers listed as inputs do not)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def check_feeds(
    model: onnx.ModelProto,
    inputs: Sequence[str],
    arrays: Mapping[str, np.ndarray],
    what: str,
) -> dict[str, np.ndarray]:
    """The arrays for the graph ``inputs``, checked against what the model declares.

    Args:
        model: the model the arrays are for.
        inputs: the graph inputs to feed.
        arrays: arrays keyed by input name, samples along axis 0; other keys are ignored.
        what: how messages name the data, e.g. ``"calibration data"`` or ``"dataset"``.

    Returns:
        The arrays of ``inputs``, keyed by name.

    Raises:
        DatasetError: a graph input without an array, a dtype, rank or fixed dimension (other
            than the batch axis) that differs from the model's, NaN or infinite values, no
            samples, or inputs with different sample counts.
    """
    declared = {i.name: i for i in model.graph.input}
    feeds = {}
    for name in inputs:
        if name not in arrays:
            given = ", ".join(sorted(arrays)) or "nothing"
            wants = ", ".join(describe(declared[n]) for n in inputs)
            raise DatasetError(f"{what} has no {name!r} (given: {given}; wants {wants})")
        feeds[name] = _checked(name, np.asarray(arrays[name]), declared[name], what)
    counts = {name: array.shape[0] for name, array in feeds.items()}
    if len(set(counts.values())) > 1:
        raise DatasetError(f"{what} inputs have different sample counts: {counts}")
    if 0 in counts.values():
        raise DatasetError(f"{what} has no samples (axis 0 has length 0)")
    return feeds


def _checked(name: str, array: np.ndarray, info: onnx.ValueInfoProto, what: str) -> np.ndarray:
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        return array
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    given = f"{what} {name!r} is {array.dtype}{list(array.shape)}"
    if array.dtype != dtype:  # never cast: ints given for floats are a mistake upstream
        raise DatasetError(f"{given}; the model wants {describe(info)}")
    if array.ndim == 0:
        raise DatasetError(f"{given}; the model wants samples along axis 0: {describe(info)}")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise DatasetError(f"{given} and holds NaN or infinity; give finite numbers")
    if not tensor_type.HasField("shape"):
        return array
    dims = tensor_type.shape.dim
    if array.ndim != len(dims):
        raise DatasetError(f"{given}; the model wants rank {len(dims)}: {describe(info)}")
    for axis, dim in enumerate(dims):
        if axis > 0 and dim.HasField("dim_value") and array.shape[axis] != dim.dim_value:
            raise DatasetError(f"{given}; the model wants {describe(info)}")
    return array


def describe(info: onnx.ValueInfoProto) -> str:
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


def fixed_batch_size(model: onnx.ModelProto, inputs: Sequence[str]) -> int | None:
    """The fixed size of axis 0 of the model's ``inputs``, or ``None`` when it is free.

    Raises:
        DatasetError: the inputs fix different batch sizes (no batch can fit them all).
    """
    fixed = {
        i.type.tensor_type.shape.dim[0].dim_value
        for i in model.graph.input
        if i.name in inputs
        and i.type.tensor_type.shape.dim
        and i.type.tensor_type.shape.dim[0].HasField("dim_value")
    }
    if len(fixed) > 1:
        raise DatasetError(f"the model's inputs fix different batch sizes {sorted(fixed)}")
    return fixed.pop() if fixed else None


def batches(
    feeds: Mapping[str, np.ndarray], total: int, size: int, stage: str | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive slices of ``size`` samples (the last may be shorter) of every array.

    With ``stage``, the samples done are reported (``onnxprune.progress``) after each batch.
    """
    for start in range(0, total, size):
        yield {name: array[start : start + size] for name, array in feeds.items()}
        if stage is not None:
            progress.report(stage, min(start + size, total), total)


def session_for(
    model: onnx.ModelProto, provider: str = "auto", *, threads: int | None = None
) -> tuple[ort.InferenceSession, str]:
    """``create_session`` for an in-memory model (a temporary file when it is 2 GiB or more)."""
    if model.ByteSize() < PROTOBUF_LIMIT:
        return create_session(model.SerializeToString(), provider, threads=threads)
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as folder:
        path = Path(folder) / "model.onnx"
        save_model(model, path, external_data_threshold=0)
        return create_session(path, provider, threads=threads)
