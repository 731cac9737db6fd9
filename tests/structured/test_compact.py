"""Compaction of dead units: outputs unchanged, shapes and parameter counts shrink as expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, shape_inference

from onnxprune.cli import main
from onnxprune.sparsity import analyze
from onnxprune.structured import compact
from onnxprune.verbs import prune
from tests.helpers import single_io_model
from tests.structured._common import close, params, run

MODELS = Path(__file__).resolve().parents[2] / "models"
DATA = np.load(MODELS / "digits_test.npz")


def _same_outputs(before: onnx.ModelProto, after: onnx.ModelProto, feed) -> None:
    onnx.checker.check_model(after, full_check=True)
    assert after.ir_version == before.ir_version
    assert list(after.opset_import) == list(before.opset_import)
    assert close(run(before, feed)[0], run(after, feed)[0])


def test_mlp_pruned95_removes_every_dead_unit_and_keeps_outputs():
    model = onnx.load(MODELS / "mlp_digits_pruned95.onnx")
    result = compact(model)
    _same_outputs(model, result.model, {"x": DATA["x"]})
    dead = {row.name: row.dead_outputs for row in analyze(model).layers}
    assert result.removed == {k: v for k, v in dead.items() if v}
    h1, h2 = 300 - dead["fc1.weight"], 100 - dead["fc2.weight"]
    assert result.params_after == params(result.model) == h1 * 65 + h2 * (h1 + 1) + 10 * h2 + 10
    assert result.params_before == params(model)
    assert analyze(result.model).layers[0].dead_outputs == 0


@pytest.mark.parametrize("sparsity", [0.8, 0.9, 0.95])
def test_pruned_cnn_keeps_outputs_and_shrinks(sparsity):
    model = prune(onnx.load(MODELS / "cnn_digits.onnx"), sparsity=sparsity).model
    result = compact(model)
    _same_outputs(model, result.model, {"image": DATA["image"]})
    assert result.params_before - result.params_after == params(model) - params(result.model)
    if sparsity >= 0.9:
        assert result.removed


@pytest.mark.parametrize("sparsity", [0.8, 0.95])
def test_pruned_mlp_keeps_outputs(sparsity):
    model = prune(onnx.load(MODELS / "mlp_digits.onnx"), sparsity=sparsity).model
    _same_outputs(model, compact(model).model, {"x": DATA["x"]})


def _conv_bn_flatten_gemm() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w[1] = 0  # no incoming weight: emits its bias, through BN, Relu and pooling
    head = rng.normal(size=(3, 4 * 2 * 2)).astype(np.float32)
    head[:, 8:12] = 0  # unit 2 has no outgoing weight
    shift = rng.normal(size=4)
    shift[1], mean = 3.0, rng.normal(size=4)
    mean[1] = -1.0  # unit 1's constant stays positive through BN and Relu
    inits = {
        "w": w,
        "b": rng.normal(size=4),
        "scale": rng.uniform(0.5, 2, 4),
        "shift": shift,
        "mean": mean,
        "var": rng.uniform(0.5, 2, 4),
        "head": head,
        "head_b": rng.normal(size=3),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "head", "head_b"], ["y"], transB=1),
    ]
    return shape_inference.infer_shapes(single_io_model(nodes, [2, 2, 4, 4], [2, 3], inits))


def test_constant_unit_folds_through_bn_relu_pool_flatten():
    model = _conv_bn_flatten_gemm()
    result = compact(model)
    assert result.removed == {"w": 2} and result.folded == {"w": 1}
    _same_outputs(
        model,
        result.model,
        {"x": np.random.default_rng(1).normal(size=(2, 2, 4, 4)).astype(np.float32)},
    )
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in result.model.graph.value_info
    }
    assert shapes["c"] == [2, 2, 4, 4] and shapes["f"] == [2, 8]
    assert result.params_before - result.params_after == 2 * 18 + 2 * 5 + 2 * 4 * 3


def test_matmul_consumer_without_bias_gets_an_add():
    w1 = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], np.float32)  # unit 1: no incoming weight
    w2 = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("MatMul", ["s", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, [5, 2], [5, 2], {"w1": w1, "b1": [0.5, -1.0, 0.0], "w2": w2})
    result = compact(model)
    assert result.removed == {"w1": 1} and result.folded == {"w1": 1}
    assert [n.op_type for n in result.model.graph.node][-1] == "Add"
    _same_outputs(
        model, result.model, {"x": np.random.default_rng(2).normal(size=(5, 2)).astype(np.float32)}
    )


def test_constant_unit_into_padded_conv_folds_as_a_map_of_in_bounds_taps():
    w = np.ones((3, 1, 3, 3), np.float32)
    w[1:] = 0  # units 1 and 2 have no incoming weight; unit 1 emits 1, unit 2 emits relu(-1)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = {"w": w, "b": [0.0, 1.0, -1.0], "w2": np.ones((2, 3, 3, 3))}
    model = single_io_model(nodes, [1, 1, 4, 4], [1, 2, 4, 4], inits)
    result = compact(model)
    assert result.removed == {"w": 2} and result.folded == {"w": 1}
    ops = [n.op_type for n in result.model.graph.node]
    assert ops == ["Conv", "Relu", "Conv", "ConstantOfShape", "Conv", "Add"]
    kernel = next(
        t for t in result.model.graph.initializer if t.name == result.model.graph.node[4].input[1]
    )
    assert np.array_equal(numpy_helper.to_array(kernel), np.ones((2, 1, 3, 3)))  # 1 x w2[:, 1]
    assert result.params_after == 1 * 9 + 1 + 2 * 1 * 9 + 2 * 9 + 4  # w, b, w2, kernel, shape
    # x = 0: every unit is constant, and y is unit 1's 1 through w2: the in-bounds tap count
    taps = np.array([2, 3, 3, 2], np.float32)  # of a 3-wide kernel, pad 1, size 4
    y = run(result.model, {"x": np.zeros((1, 1, 4, 4), np.float32)})[0]
    assert np.array_equal(y, np.broadcast_to(np.outer(taps, taps), (1, 2, 4, 4)))
    _same_outputs(model, result.model, {"x": np.ones((1, 1, 4, 4), np.float32)})


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [0, 1, 2, 0]},
        {"pads": [1, 1, 1, 1], "strides": [2, 2]},
        {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER"},
    ],
)
def test_padded_fold_matches_onnx_runtime_for_strides_dilations_and_auto_pad(attrs):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w[[1, 3]] = 0  # constant units: their biases through Relu
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["y"], **attrs),
    ]
    inits = {
        "w": w,
        "b": [0.5, 1.5, -0.2, 0.7],
        "w2": rng.normal(size=(3, 4, 3, 3)),
        "b2": rng.normal(size=3),
    }
    model = shape_inference.infer_shapes(single_io_model(nodes, [1, 2, 7, 6], None, inits))
    result = compact(model)
    assert result.removed == {"w": 2} and result.folded == {"w": 2}
    _same_outputs(model, result.model, {"x": rng.normal(size=(1, 2, 7, 6)).astype(np.float32)})


def test_residual_members_and_last_unit_are_kept():
    w = np.zeros((2, 2), np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "x"], ["a"]),  # residual: h's units are left alone
        helper.make_node("MatMul", ["a", "v"], ["z"]),
        helper.make_node("MatMul", ["z", "u"], ["y"]),
    ]
    inits = {"w": w, "v": np.ones((2, 2)), "u": np.zeros((2, 2))}
    model = single_io_model(nodes, [1, 2], [1, 2], inits)
    result = compact(model)
    assert result.removed == {"v": 1}  # every unit of v is dead; one is kept
    _same_outputs(model, result.model, {"x": np.ones((1, 2), np.float32)})


def test_cli_compact(tmp_path, capsys):
    out = tmp_path / "small.onnx"
    assert (
        main(["compact", str(MODELS / "mlp_digits_pruned95.onnx"), "-o", str(out), "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["removed"] == {"fc1.weight": 140, "fc2.weight": 31}
    assert summary["params_after"] == params(onnx.load(out)) < summary["params_before"]
