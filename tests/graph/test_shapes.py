"""Shape inference's folding of small constants (``graph.shapes``)."""

from __future__ import annotations

import warnings

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.shapes import infer_shapes_and_values


def test_folding_log_of_zero_and_its_cast_warns_nothing() -> None:
    # T5's relative position buckets: log of |i - j| / n, 0 on the diagonal, cast to int64.
    # log(0) = -inf and its cast are what ONNX Runtime computes too: the folded value is kept
    # (-inf cast is undefined; only its presence is checked) and numpy's warnings stay quiet.
    distance = numpy_helper.from_array(np.array([0.0, 1.0, np.e], np.float32), "d")
    nodes = [
        helper.make_node("Log", ["d"], ["log"]),
        helper.make_node("Cast", ["log"], ["bucket"], to=TensorProto.INT64),
        helper.make_node("Gather", ["x", "bucket"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [distance],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, values = infer_shapes_and_values(model)
    assert np.isneginf(values["log"][0]) and values["log"][1:].tolist() == [0.0, 1.0]
    assert values["bucket"][1:].tolist() == [0, 1]
