"""``apply_masks`` writes each masked initializer in place: the masked entries zero, the others
bit-identical, the dtype, shape and name kept, whatever form the tensor was stored in (raw bytes
or typed fields, plain numbers or the types ``numpy_helper`` handles itself)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.pruners.masks import apply_masks
from onnxprune.weights import WeightSource

RNG = np.random.default_rng(0)


def _model(tensor: onnx.TensorProto) -> onnx.ModelProto:
    node = helper.make_node("Identity", [tensor.name], ["y"])
    out = helper.make_tensor_value_info("y", tensor.data_type, list(tensor.dims))
    graph = helper.make_graph([node], "g", [], [out], initializer=[tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _values(dtype) -> np.ndarray:
    return (RNG.standard_normal((3, 4)) * 4).astype(dtype)


RAW = [np.float32, np.float16, np.float64, np.int8, np.int32, np.uint8, ml_dtypes.bfloat16]


@pytest.mark.parametrize("dtype", RAW, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_fields"])
def test_masked_entries_are_zero_and_the_rest_identical(dtype, raw):
    values = _values(dtype)
    if raw:
        tensor = numpy_helper.from_array(values, "w")
    else:  # as make_tensor writes plain lists: float_data, int32_data (16-bit floats as bits)
        kind = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        tensor = helper.make_tensor("w", kind, values.shape, values.reshape(-1).tolist())
    assert np.array_equal(numpy_helper.to_array(tensor), values)
    mask = RNG.random(values.shape) < 0.5
    model = _model(tensor)
    pruned = apply_masks(model, {"w": mask}, {"w": WeightSource("w", "initializer")})
    written = pruned.graph.initializer[0]
    assert (written.name, written.data_type, list(written.dims)) == (
        "w",
        tensor.data_type,
        list(tensor.dims),
    )
    got = numpy_helper.to_array(written)
    assert got.dtype == values.dtype
    expected = np.where(mask, values, np.zeros((), values.dtype))
    assert got.tobytes() == expected.tobytes()  # kept entries bit-identical, masked ones +0
    assert np.array_equal(numpy_helper.to_array(model.graph.initializer[0]), values)  # input kept
    onnx.checker.check_model(pruned, full_check=True)


def test_a_mask_that_keeps_everything_leaves_the_tensor_as_stored():
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, -2.0, 3.0, 0.5])
    pruned = apply_masks(
        _model(tensor), {"w": np.ones((2, 2), bool)}, {"w": WeightSource("w", "initializer")}
    )
    assert pruned.graph.initializer[0] == tensor  # still float_data, not rewritten


def test_only_the_masked_data_changes_in_the_whole_model():
    """The copy is made field by field, the masked initializer's data left out: every other
    field (model, graph and tensor metadata, the other initializers and their order) is kept."""
    first = numpy_helper.from_array(_values(np.float32), "a")
    masked = numpy_helper.from_array(_values(np.float32), "w")
    masked.doc_string = "the weight"
    entry = masked.metadata_props.add()
    entry.key, entry.value = "origin", "test"
    last = helper.make_tensor("z", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("Add", ["a", "w"], ["s"]),
        helper.make_node("Reshape", ["s", "z"], ["y"]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [], [out], initializer=[first, masked, last])
    graph.doc_string = "graph"
    graph.value_info.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [3, 4]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.producer_name, model.doc_string = "test", "model"
    helper.set_model_props(model, {"author": "me"})
    before = model.SerializeToString()
    mask = RNG.random((3, 4)) < 0.5

    pruned = apply_masks(model, {"w": mask}, {"w": WeightSource("w", "initializer")})

    assert model.SerializeToString() == before  # the input is not touched
    written = pruned.graph.initializer[1]
    expected = np.where(mask, numpy_helper.to_array(masked), np.float32(0))
    assert numpy_helper.to_array(written).tobytes() == expected.tobytes()
    assert (written.doc_string, dict((p.key, p.value) for p in written.metadata_props)) == (
        "the weight",
        {"origin": "test"},
    )
    written.CopyFrom(masked)  # with its old data back, the copy is the model itself
    assert pruned == model
    assert [t.name for t in pruned.graph.initializer] == ["a", "w", "z"]
