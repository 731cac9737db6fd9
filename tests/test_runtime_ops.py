"""Ops ONNX Runtime registers in ONNX's own domain: loaded when ONNX Runtime runs the model.

ONNX Runtime's optimizer writes RMSNorm as ``SimplifiedLayerNormalization`` in the default
domain; onnx's checker refuses it, ONNX Runtime runs it. A default-domain op neither knows, or a
model that is malformed besides, is still refused in one line.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from onnxprune import runtime_ops
from onnxprune.errors import InvalidModelError
from onnxprune.model import load_model
from tests.helpers import run_cli, single_io_model

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def _rms_model(op: str = "SimplifiedLayerNormalization", extra=()) -> onnx.ModelProto:
    """y = op(x @ w, scale) over the last axis, ``extra`` nodes before it."""
    nodes = [
        *extra,
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node(op, ["h", "scale"], ["y"], axis=-1, epsilon=1e-5),
    ]
    inits = {"w": W, "scale": np.array([1.0, 2.0, 0.5])}
    return single_io_model(nodes, [2, 4], [2, 3], inits)


def test_onnx_refuses_what_onnx_runtime_runs():
    # the premise, by an independent method: RMSNorm in numpy
    model = _rms_model()
    with pytest.raises(onnx.checker.ValidationError, match="SimplifiedLayerNormalization"):
        onnx.checker.check_model(model)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    h = x @ W
    expected = h / np.sqrt((h**2).mean(-1, keepdims=True) + 1e-5) * [1.0, 2.0, 0.5]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5)


def test_a_model_onnx_runtime_runs_loads_as_it_came(tmp_path):
    model = _rms_model()
    loaded = load_model(model.SerializeToString())
    assert loaded.ir_version == model.ir_version
    assert list(loaded.opset_import) == list(model.opset_import)
    assert [n.domain for n in loaded.graph.node] == ["", ""]
    path = tmp_path / "rms.onnx"
    onnx.save(model, path)
    done = run_cli("prune", str(path), "-o", str(tmp_path / "out.onnx"), "--sparsity", "0.5")
    assert done.returncode == 0, done.stderr
    out = onnx.load(tmp_path / "out.onnx")
    assert out.ir_version == model.ir_version
    assert list(out.opset_import) == list(model.opset_import)
    assert int((onnx.numpy_helper.to_array(out.graph.initializer[0]) == 0).sum()) == 6


def test_unknown_ops_names_the_default_domain_ops_onnx_lacks_subgraphs_included():
    model = _rms_model()
    branch = helper.make_graph(
        [helper.make_node("NoSuchOp", ["h"], ["z"])],
        "b",
        [],
        [helper.make_value_info("z", onnx.TypeProto())],
    )
    model.graph.node.append(
        helper.make_node("If", ["c"], ["o"], then_branch=branch, else_branch=branch)
    )
    model.graph.node.append(helper.make_node("Gelu", ["h"], ["g"], domain="com.microsoft"))
    assert runtime_ops.unknown_ops(model) == {"SimplifiedLayerNormalization", "NoSuchOp"}


@pytest.mark.parametrize(
    "model",
    [
        _rms_model("NoSuchOp"),
        # ONNX Runtime's op, in a model that reads a tensor nothing makes
        _rms_model(extra=[helper.make_node("Relu", ["ghost"], ["unused"])]),
    ],
    ids=["unknown-op", "malformed-besides"],
)
def test_what_onnx_runtime_does_not_run_is_refused_in_one_line(tmp_path, model):
    with pytest.raises(InvalidModelError, match=r"^not a valid ONNX model: "):
        load_model(model.SerializeToString())
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    done = run_cli("analyze", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("InvalidModelError: not a valid ONNX model: ")


def test_an_op_type_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    data = _rms_model("NoSuchOp").SerializeToString().replace(b"NoSuchOp", b"\x80oSuchOp")
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    done = run_cli("analyze", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "InvalidModelError: not a valid ONNX model: a name or text is not valid UTF-8\n"
    )
