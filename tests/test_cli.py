"""The command line: output formats, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.cli import main
from tests.helpers import run_cli as _run

MODELS = Path(__file__).resolve().parents[1] / "models"
LAYER_KEYS = {
    "name",
    "op_type",
    "shape",
    "params",
    "direct_sparsity",
    "effective_sparsity",
    "dead_inputs",
    "dead_outputs",
    "macs",
    "nonzero_macs",
    "label",
    "shared_by",
}
TOP_KEYS = {
    "total_params",
    "direct_sparsity",
    "effective_sparsity",
    "direct_compression",
    "effective_compression",
    "level",
    "macs",
    "nonzero_macs",
    "dead_inputs",
    "dead_outputs",
    "layers",
    "fallback_ops",
    "blocks",
}


def _mlp(path: Path, w1: np.ndarray, w2: np.ndarray, batch: str | int = "N") -> Path:
    """x[N, k] -> MatMul w1 -> Relu -> MatMul w2 -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, w1.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, w2.shape[1]])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def _conv(path: Path) -> Path:
    """A 3x3 conv over an image with symbolic height and width."""
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [w],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_json_has_exactly_the_documented_keys(tmp_path, capsys):
    # w2 row 1 is zero: hidden unit 1 reaches no output, so w1's column 1 (2 weights) is inactive.
    w1 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    w2 = np.array([[1.0], [0.0]], np.float32)
    path = _mlp(tmp_path / "m.onnx", w1, w2)
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == TOP_KEYS
    assert report["level"] == "channel"
    assert report["total_params"] == 6
    assert report["direct_sparsity"] == pytest.approx(1 / 6)
    assert report["effective_sparsity"] == pytest.approx(3 / 6)  # 1 zero + 2 inactive
    assert report["direct_compression"] == pytest.approx(6 / 5)
    assert report["effective_compression"] == pytest.approx(2.0)
    assert report["fallback_ops"] == []
    assert [set(layer) for layer in report["layers"]] == [LAYER_KEYS, LAYER_KEYS]
    first = report["layers"][0]
    assert first["name"] == "w1" and first["shape"] == [2, 2] and first["dead_outputs"] == 1
    assert first["shared_by"] == []


def test_json_gives_the_sparsity_of_each_block_of_units(tmp_path, capsys):
    # The MLP above: hidden unit 1 holds w1's column 1 (2 nonzero, inactive) and w2's row 1
    # (zero): 3 weights, 1 zero, none active: dead. Unit 0: 3 weights, all active. The output
    # neuron (a graph output: blocked) holds w2's column: 2 weights, 1 zero, 1 active.
    w1 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    path = _mlp(tmp_path / "m.onnx", w1, np.array([[1.0], [0.0]], np.float32))
    assert main(["analyze", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocks"] == []  # only asked for
    assert main(["analyze", str(path), "--units", "--json"]) == 0
    hidden, out = json.loads(capsys.readouterr().out)["blocks"]
    assert (hidden["kind"], hidden["units"], hidden["dead"], hidden["blocked"]) == (
        "neuron",
        2,
        1,
        0,
    )
    assert hidden["params"] == 6 and hidden["layers"] == ["w1", "w2"]  # filter, then reader
    assert hidden["direct_sparsity"] == pytest.approx(1 / 6)
    assert hidden["effective_sparsity"] == pytest.approx(3 / 6)
    assert (out["units"], out["dead"], out["blocked"], out["params"]) == (1, 0, 1, 2)
    assert out["effective_sparsity"] == pytest.approx(1 / 2)
    assert hidden["heads"] == out["heads"] == []


def test_infinite_compression_is_null(tmp_path, capsys):
    path = _mlp(tmp_path / "m.onnx", np.zeros((2, 2), np.float32), np.ones((2, 1), np.float32))
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["effective_sparsity"] == 1.0
    assert report["effective_compression"] is None
    assert report["direct_compression"] == pytest.approx(6 / 2)


def test_table_lists_layers_totals_and_fallbacks(tmp_path, capsys):
    path = _mlp(tmp_path / "m.onnx", np.ones((3, 4), np.float32), np.ones((4, 2), np.float32))
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["layer", "op", "shape", "params"]
    assert any(line.startswith("w1 ") and "3x4" in line and "12" in line for line in lines)
    assert "direct sparsity:    0.0000%" in out
    assert "fell back to dense mixing: none" in out


def test_exact_level_needs_static_shapes_and_input_shape_fixes_them(tmp_path, capsys):
    path = _conv(tmp_path / "c.onnx")
    assert main(["analyze", str(path), "--exact"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ShapeError: ") and "--input-shape" in err
    assert err.count("\n") == 1
    # On a 1x1 map with pads 1 only the centre tap of each 3x3 kernel touches real input.
    assert main(["analyze", str(path), "--exact", "--input-shape", "x=1,1,1,1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["level"] == "exact"
    assert report["effective_sparsity"] == pytest.approx(8 / 9)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x=1,a", "must look like NAME="),
        ("x", "must look like NAME="),
        ("x=0,1", "must look like NAME="),
        ("nope=1,1,1,1", "graph inputs are ['x']"),
        ("x=1,1", "has rank 2"),
    ],
)
def test_bad_input_shape_is_a_one_line_error(tmp_path, capsys, spec, message):
    path = _conv(tmp_path / "c.onnx")
    assert main(["analyze", str(path), "--exact", "--input-shape", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("InvalidOptionError: ") and message in err
    assert err.count("\n") == 1


def _escaping_model(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.ones(16, np.float32).tobytes())
    inner = tmp_path / "model"
    inner.mkdir()
    w = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", "64")):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path = inner / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: p / "missing.onnx", "InvalidModelError: model file not found"),
        (lambda p: _write(p / "g.onnx", b"not a model at all"), "InvalidModelError: "),
        (lambda p: _write(p / "e.onnx", b""), "InvalidModelError: "),
        (lambda p: _truncated(p), "InvalidModelError: "),
        (_escaping_model, "InvalidModelError: external data '../outside.bin'"),
    ],
)
def test_bad_models_exit_2_with_one_line_and_no_traceback(tmp_path, make, error):
    path = make(tmp_path)
    result = _run("analyze", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_over_limit_model_exits_2(tmp_path):
    path = _mlp(tmp_path / "m.onnx", np.ones((8, 8), np.float32), np.ones((8, 2), np.float32))
    result = _run("analyze", str(path), "--max-bytes", "100")
    assert result.returncode == 2
    assert result.stderr.startswith("LimitExceededError: ")


def test_debug_shows_the_traceback(tmp_path):
    result = _run("--debug", "analyze", str(tmp_path / "missing.onnx"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "InvalidModelError" in result.stderr


def test_bundled_sample_model_through_the_console_script():
    result = _run("analyze", str(MODELS / "mlp_digits_pruned95.onnx"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    model = onnx.load(MODELS / "mlp_digits_pruned95.onnx")
    weights = [
        numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) == 2
    ]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.size for w in weights)
    assert report["total_params"] == total
    assert report["direct_sparsity"] == pytest.approx(zeros / total)
    assert report["effective_sparsity"] > report["direct_sparsity"]


def test_help_lists_analyze_options():
    result = _run("analyze", "--help")
    assert result.returncode == 0
    for option in ("--json", "--exact", "--input-shape", "--max-bytes"):
        assert option in result.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(tmp_path: Path) -> Path:
    full = _mlp(tmp_path / "full.onnx", np.ones((8, 8), np.float32), np.ones((8, 2), np.float32))
    data = full.read_bytes()
    return _write(tmp_path / "half.onnx", data[: len(data) // 2])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["compact", "{m}", "-o", "{m}"], "would overwrite the input model"),
        (["compact", "{m}", "-o", "{d}/missing/out.onnx"], "does not exist"),
        (["compact", "{m}", "-o", "{d}"], "it is a folder"),
        (["prune", "{m}", "-o", "{d}/missing/o.onnx", "--sparsity", "0.5"], "does not exist"),
        (["prune", "{m}", "-o", "{d}/o.onnx", "--sparsity", "0.5", "--masks-out", "{m}"],
         "would overwrite the input model"),
        (["prune", "{m}", "-o", "{d}/o.onnx", "--structured", "l1", "--sparsity", "0.5",
          "--masked-out", "{d}/o.onnx"], "would overwrite another output"),
    ],
)  # fmt: skip
def test_bad_output_paths_exit_2_before_any_work_and_keep_the_input(tmp_path, command, message):
    model = tmp_path / "m.onnx"
    model.write_bytes((MODELS / "mlp_digits_pruned95.onnx").read_bytes())
    args = [a.format(m=model, d=tmp_path) for a in command]
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert model.read_bytes() == (MODELS / "mlp_digits_pruned95.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
