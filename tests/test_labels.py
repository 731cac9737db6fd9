"""A dataset's labels against the classes a model declares, per sample and per position."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxprune.errors import DatasetError
from onnxprune.labels import check_labels, declared_classes, position_labels


def _declaring(shape: list) -> object:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", f, shape)],
        [helper.make_tensor_value_info("y", f, shape)],
    )  # fmt: skip
    return helper.make_model(graph)


@pytest.mark.parametrize(
    ("shape", "class_axis", "classes"),
    [
        (["N", 10], None, 10),
        (["N", 10], -1, 10),
        (["N", 7, 50], None, None),  # flattened: no one axis declares the classes
        (["N", 7, 50], -1, 50),
        (["N", 21, 8, 8], 1, 21),
        (["N", "T", "V"], -1, None),  # symbolic
        (["N", 7, 50], 3, None),  # no such axis: the run says so
    ],
)
def test_declared_classes(shape, class_axis, classes) -> None:
    assert declared_classes(_declaring(shape), class_axis) == classes


def test_labels_per_position_are_checked_against_the_declared_classes() -> None:
    labels = np.array([[0, 49, 50], [1, 2, 3]])
    check_labels(labels, 2, 51, class_axis=-1)
    with pytest.raises(DatasetError, match=r"^labels range over \[0, 50\]; .* in \[0, 49\]$"):
        check_labels(labels, 2, 50, class_axis=-1)
    with pytest.raises(DatasetError, match=r"they must have shape \[2\], one per sample$"):
        check_labels(labels, 2, 51)  # without a class axis, one label per sample


def test_position_labels_follow_the_rows_of_the_scores() -> None:
    # Segmentation [N=1, C=3, H=2, W=2]: rows are the pixels in order (0,0), (0,1), (1,0), (1,1).
    out = np.zeros((1, 3, 2, 2))
    labels = np.array([[[2, 0], [1, 2]]])
    assert position_labels(labels, out, 1, "masks").tolist() == [2, 0, 1, 2]
