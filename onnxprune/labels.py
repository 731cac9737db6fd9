"""Class labels of a dataset: checked against a model's classes, and per position.

A dataset's ``labels`` are integer classes ``[N]``, one per sample; with a class axis
(``validate(..., class_axis=-1)``, see ``onnxprune.metrics.scores_of``) they are
``[N, *positions]``: a class per sample and position (``[N, T]`` token ids for logits
``[N, T, V]``), flattened in the order ``scores_of`` lays the positions out.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.errors import DatasetError
from onnxprune.metrics import class_axis_of


def declared_classes(model: onnx.ModelProto, class_axis: int | None = None) -> int | None:
    """The class count the first output declares, if any.

    Without ``class_axis``, of an output ``[N, C]`` with a fixed ``C``; with it, the fixed size
    of that axis of an output of known rank that has it.
    """
    if not model.graph.output:
        return None
    tensor_type = model.graph.output[0].type.tensor_type
    dims = tensor_type.shape.dim if tensor_type.HasField("shape") else ()
    if class_axis is None:
        axis = 1 if len(dims) == 2 else None
    else:
        axis = class_axis + len(dims) if class_axis < 0 else class_axis
        axis = axis if 1 <= axis < len(dims) else None
    if axis is not None and dims[axis].HasField("dim_value"):
        return dims[axis].dim_value
    return None


def check_labels(
    labels: np.ndarray | None, samples: int, classes: int | None, class_axis: int | None = None
) -> None:
    """Refuse labels that are not integer classes of ``samples`` samples within ``classes``.

    Args:
        labels: the dataset's labels, or ``None`` (nothing to check).
        samples: the samples of the dataset (or batch).
        classes: the model's class count, when known.
        class_axis: with one, labels ``[samples, *positions]`` are allowed; their positions
            are checked against the output by ``position_labels``.

    Raises:
        DatasetError: a float or boolean array, another sample count or shape, or a label
            outside ``[0, classes)``.
    """
    if labels is None:
        return
    given = f"labels are {labels.dtype}{list(labels.shape)}"
    shape = f"[{samples}]" if class_axis is None else f"[{samples}, ...]"
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{given}; they must be integer classes, shape {shape}")
    if class_axis is None and labels.shape != (samples,):
        raise DatasetError(f"{given}; they must have shape [{samples}], one per sample")
    if class_axis is not None and (not labels.ndim or labels.shape[0] != samples):
        raise DatasetError(
            f"{given}; they must have shape [{samples}, *positions], one class per sample and "
            "position"
        )
    if not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes is not None and high >= classes):
        allowed = "must be >= 0" if classes is None else f"must be in [0, {classes - 1}]"
        raise DatasetError(f"labels range over [{low}, {high}]; the model's classes {allowed}")


def position_labels(labels: np.ndarray, out: np.ndarray, class_axis: int, name: str) -> np.ndarray:
    """Labels ``[n, *positions]`` of a batch as one class per row of ``scores_of(out)``.

    Raises:
        DatasetError: the labels' positions are not the output's (``out`` without its class
            axis).
    """
    positions = list(np.delete(out.shape, class_axis_of(class_axis, out.ndim, name))[1:])
    if list(labels.shape[1:]) != positions:
        given = ", ".join(["N", *map(str, labels.shape[1:])])
        wanted = ", ".join(["N", *map(str, positions)])
        shape = ", ".join(["N", *map(str, out.shape[1:])])
        raise DatasetError(
            f"labels are [{given}]; with class_axis={class_axis} they must be [{wanted}], one "
            f"class per sample and position of output {name!r} [{shape}]"
        )
    return labels.reshape(-1)
