"""Data-movement rules: the element ids of each ``Move`` equal what the op really does.

Each op runs in onnx's ReferenceEvaluator on inputs whose values are their own element ids
(plus one, so that padding, which is 0, reads as "no source"), independently of our NumPy
re-implementation in ``graph/rules/movement.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxprune.graph import build_graph
from onnxprune.graph.transfers import Dense, Move

I64 = np.int64


def _case(op, shapes, consts=(), outputs=1, **attrs):
    return op, shapes, consts, outputs, attrs


CASES = {
    "reshape": _case("Reshape", [(1, 6, 2, 2)], [np.array([1, 3, 2, 4], I64)]),
    "reshape_zero_minus_one": _case("Reshape", [(1, 6, 2, 2)], [np.array([0, -1, 2], I64)]),
    "flatten": _case("Flatten", [(1, 2, 3, 4)], axis=1),
    "flatten_axis2": _case("Flatten", [(1, 2, 3, 4)], axis=2),
    "transpose": _case("Transpose", [(1, 2, 3, 4)], perm=[0, 2, 3, 1]),
    "transpose_reverse": _case("Transpose", [(1, 2, 3)]),
    "squeeze": _case("Squeeze", [(1, 3, 1, 4)], [np.array([2], I64)]),
    "unsqueeze": _case("Unsqueeze", [(1, 3, 4)], [np.array([1, -1], I64)]),
    "concat_channels": _case("Concat", [(1, 2, 3), (1, 4, 3)], axis=1),
    "concat_last": _case("Concat", [(1, 2, 3), (1, 2, 1), (1, 2, 2)], axis=-1),
    "split": _case("Split", [(1, 6, 2)], [np.array([2, 4], I64)], outputs=2, axis=1),
    "split_even": _case("Split", [(1, 2, 6)], outputs=3, axis=2, num_outputs=3),
    "slice": _case(
        "Slice",
        [(1, 5, 6)],
        [
            np.array([1, -1], I64),
            np.array([4, -7], I64),
            np.array([1, 2], I64),
            np.array([2, -2], I64),
        ],
    ),
    "slice_huge_end": _case(
        "Slice", [(1, 5, 4)], [np.array([2], I64), np.array([2**62], I64), np.array([1], I64)]
    ),
    "pad_constant": _case("Pad", [(1, 2, 3, 3)], [np.array([0, 0, 1, 2, 0, 0, 2, 1], I64)]),
    "pad_reflect": _case(
        "Pad", [(1, 2, 3, 3)], [np.array([0, 0, 1, 2, 0, 0, 2, 1], I64)], mode="reflect"
    ),
    "pad_edge": _case(
        "Pad", [(1, 2, 3, 3)], [np.array([0, 0, 1, 0, 0, 0, 0, 2], I64)], mode="edge"
    ),
    "expand": _case("Expand", [(1, 3, 1)], [np.array([2, 3, 4], I64)]),
    "tile": _case("Tile", [(1, 2, 3)], [np.array([1, 2, 3], I64)]),
    "gather": _case("Gather", [(1, 4, 3)], [np.array([2, 0, -1], I64)], axis=1),
    "gather_nd_pairs": _case("GatherND", [(3, 2, 4)], [np.array([[2, 1], [0, -1]], I64)]),
    "gather_nd_rows": _case("GatherND", [(5, 2, 3)], [np.array([[[-2]], [[0]]], I64)]),
    "depth_to_space_dcr": _case("DepthToSpace", [(1, 8, 2, 3)], blocksize=2),
    "depth_to_space_crd": _case("DepthToSpace", [(1, 8, 2, 3)], blocksize=2, mode="CRD"),
    "space_to_depth": _case("SpaceToDepth", [(1, 2, 4, 6)], blocksize=2),
}


def _model(op, shapes, consts, outputs, attrs):
    names = [f"x{i}" for i in range(len(shapes))]
    inits = [numpy_helper.from_array(c, f"c{i}") for i, c in enumerate(consts)]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names + [t.name for t in inits], outs, **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [
            helper.make_tensor_value_info(n, TensorProto.DOUBLE, s)
            for n, s in zip(names, shapes, strict=True)
        ],
        [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in outs],
        inits,
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_move_ids_match_the_reference_evaluator(case):
    op, shapes, consts, outputs, attrs = CASES[case]
    model = _model(op, shapes, consts, outputs, attrs)
    # Inputs hold their global element id + 1; the op's output then names each element's source.
    feeds, offset = {}, 0
    for i, shape in enumerate(shapes):
        size = int(np.prod(shape))
        feeds[f"x{i}"] = np.arange(offset + 1, offset + size + 1, dtype=np.float64).reshape(shape)
        offset += size
    expected = ReferenceEvaluator(model).run(None, feeds)
    (step,) = build_graph(model).steps
    assert len(step.transfers) == outputs
    for transfer, want in zip(step.transfers, expected, strict=True):
        assert isinstance(transfer, Move), transfer
        np.testing.assert_array_equal(transfer.ids, want.astype(np.int64) - 1)


def test_movement_without_static_shapes_falls_back_and_says_why():
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1])],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    built = build_graph(model)
    (transfer,) = built.steps[0].transfers
    assert isinstance(transfer, Dense) and "--input-shape" in transfer.reason
    assert [f.op_type for f in built.fallbacks] == ["Transpose"]
    fixed = build_graph(model, {"x": (1, 3, 4)})
    assert isinstance(fixed.steps[0].transfers[0], Move) and not fixed.fallbacks


def test_slice_with_run_time_bounds_falls_back():
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "s", "e"], ["y"])],
        "s",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("e", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    built = build_graph(model)
    assert isinstance(built.steps[0].transfers[0], Dense)
    assert built.fallbacks and "run time" in built.fallbacks[0].reason


def test_onnx_version_of_slice_before_opset_10_reads_attributes():
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1], ends=[3], axes=[1])
    graph = helper.make_graph(
        [node],
        "s",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, ir_version=4, opset_imports=[helper.make_opsetid("", 9)])
    onnx.checker.check_model(model)
    (transfer,) = build_graph(model).steps[0].transfers
    np.testing.assert_array_equal(transfer.ids, [[1, 2]])


def test_gather_beyond_a_symbolic_batch_falls_back():
    # A voice-activity export keeps its state as [2, batch, 128] and gathers entry 1 of axis 0;
    # here x is [N, 3] with N symbolic (counted as 1) and Gather(x, 1, axis=0) reads row 1 of
    # it, which the batch-1 shape does not have. Before the fix: IndexError in the rule.
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["x", "i"], ["g"], axis=0),
            helper.make_node("MatMul", ["g", "w"], ["y"]),
        ],
        "gather_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [
            numpy_helper.from_array(np.array(1, I64), "i"),
            numpy_helper.from_array(np.ones((3, 2), np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    built = build_graph(model)
    assert [(f.op_type, "outside axis 0 of size 1" in f.reason) for f in built.fallbacks] == [
        ("Gather", True)
    ]
    # With the batch fixed at 2, row 1 exists and Gather moves it: elements 3..5 of x.
    fixed = build_graph(model, {"x": (2, 3)})
    np.testing.assert_array_equal(fixed.steps[0].transfers[0].ids, [3, 4, 5])
