"""Sensitivity analysis: curves of one layer against an independent NumPy computation (output
error of nested magnitude masks; units removed by the L1 criterion), every prunable layer in the
JSON, a plot per curve in the HTML, and the command's refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.sensitivity import analyze_sensitivity
from onnxprune.sparsity import analyze
from tests.helpers import refused, single_io_model

MODELS = Path(__file__).resolve().parents[1] / "models"
CNN = str(MODELS / "cnn_digits.onnx")
DATA = str(MODELS / "digits_test.npz")
LEVELS = [i / 8 for i in range(1, 8)]  # 4 .. 28 of the 32 weights of an 8x4 matmul


def _matmul(tmp_path, w, x):
    """``y = x @ w`` saved with its data (no labels)."""
    model = single_io_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], ["N", 8], ["N", 4], {"w": w}
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    data = tmp_path / "d.npz"
    np.savez(data, x=x.astype(np.float32))
    return str(path), str(data)


def _reference(w, x, level):
    """Mean |x @ w_pruned - x @ w| in float64, the round(level * 32) smallest |w| zeroed."""
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    pruned = w.ravel().copy()
    pruned[order[: round(level * w.size)]] = 0
    x64 = x.astype(np.float64)
    return float(np.mean(np.abs(x64 @ pruned.reshape(w.shape) - x64 @ w.astype(np.float64))))


def _curve(tmp_path, w, x):
    model, data = _matmul(tmp_path, w, x)
    result = analyze_sensitivity(model, data, levels=LEVELS, metric="mean_abs_error")
    (curve,) = result.layers
    assert result.baseline == 0.0
    assert curve.levels == pytest.approx(LEVELS)
    return curve


def test_output_error_of_nested_magnitude_masks_never_falls_on_positive_weights(tmp_path):
    # Positive weights and inputs: every weight removed adds x_j * w_jk >= 0 to an output's
    # error, and each level removes the previous level's weights and more, so the error can
    # only grow.
    rng = np.random.default_rng(0)
    w = rng.permutation(np.arange(1, 33, dtype=np.float32) / 8).reshape(8, 4)
    x = rng.random((32, 8)).astype(np.float32)
    curve = _curve(tmp_path, w, x)
    expected = [_reference(w, x, level) for level in LEVELS]
    assert curve.values == pytest.approx(expected, rel=1e-5)
    assert all(a < b for a, b in zip(curve.values, curve.values[1:], strict=False))


def test_output_error_equals_the_reference_with_mixed_signs(tmp_path):
    # With mixed signs removed weights can cancel, so the error is not monotone in general;
    # the curve is still exactly what those masks do.
    rng = np.random.default_rng(1)
    magnitudes = rng.permutation(np.arange(1, 33, dtype=np.float32) / 8)
    w = (magnitudes * rng.choice([-1, 1], 32)).reshape(8, 4).astype(np.float32)
    x = rng.normal(size=(32, 8)).astype(np.float32)
    curve = _curve(tmp_path, w, x)
    assert curve.values == pytest.approx([_reference(w, x, lv) for lv in LEVELS], rel=1e-5)


def test_structured_curve_removes_the_weakest_units(tmp_path):
    # x[N,4] -> MatMul w1[4,6] -> Relu -> MatMul w2[6,3]: the units of w1's 6 columns, scored
    # by L1. w2's rows are all alike, so the order is that of w1's columns: at 50% the three
    # weakest (0.1, 0.2, 0.3: columns 1, 3, 0) go.
    w1 = np.tile(np.array([0.3, 0.1, 0.6, 0.2, 0.5, 0.4], np.float32), (4, 1))
    w2 = np.ones((6, 3), np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, ["N", 4], ["N", 3], {"w1": w1, "w2": w2})
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    result = analyze_sensitivity(
        str(path), str(tmp_path / "d.npz"), levels=[0.5], structured="l1", metric="max_abs_error"
    )
    (group,) = result.groups
    assert group.layers == ("w1",)
    assert (group.params, group.levels) == (6, (0.5,))
    x64 = x.astype(np.float64)
    dense = np.maximum(x64 @ w1, 0) @ w2
    kept = np.maximum(x64 @ w1[:, [2, 4, 5]], 0) @ w2[[2, 4, 5]]
    assert group.values[0] == pytest.approx(np.abs(kept - dense).max(), rel=1e-5)


def test_every_layer_in_the_json_and_a_plot_per_curve_in_the_html(tmp_path):
    out = tmp_path / "sens"
    assert (
        main(
            [
                "sensitivity",
                CNN,
                "--data",
                DATA,
                "--out",
                str(out),
                "--levels",
                "0.5",
                "--structured",
                "--jobs",
                "2",
            ]
        )
        == 0
    )
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["kind"] == "sensitivity"
    assert [c["name"] for c in data["layers"]] == [layer.name for layer in analyze(CNN).layers]
    assert all(len(c["values"]) == 1 and c["error"] is None for c in data["layers"])
    assert data["groups"]  # the CNN has channels to remove
    page = (out / "index.html").read_text()
    curves = data["layers"] + data["groups"]
    assert page.count("<figure>") == len(curves)
    for curve in data["layers"]:
        assert f'alt="{curve["name"]} (unstructured)"' in page


def test_cli_refusals(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("")
    run = ["sensitivity", CNN, "--data", DATA, "--out"]
    err = refused(capsys, *run, str(taken))
    assert err == f"InvalidOptionError: --out {taken} is a file, not a folder"
    out = str(tmp_path / "sens")
    assert refused(capsys, *run, out, "--levels", "0.5,1").endswith("must be a number in (0, 1)")
    assert refused(capsys, *run, out, "--levels", "half").startswith("InvalidOptionError: --levels")
    err = refused(capsys, *run, out, "--score", "activation")
    assert err.startswith("InvalidOptionError: score activation reads calibration data")
    err = refused(capsys, *run, out, "--structured", "l7")
    assert err.startswith("InvalidOptionError: criterion 'l7'")
    unlabelled = tmp_path / "x.npz"
    with np.load(DATA) as d:
        np.savez(unlabelled, **{k: d[k] for k in d.files if k != "labels"})
    err = refused(capsys, "sensitivity", CNN, "--data", str(unlabelled), "--out", out)
    assert err == "InvalidOptionError: metric top1 needs labels; the dataset has no 'labels'"
    assert not (Path(out) / "sensitivity.json").exists()


def test_library_refusals(tmp_path):
    for levels, message in (([], "at least one level"), ([0.0], "in \\(0, 1\\)")):
        with pytest.raises(InvalidOptionError, match=message):
            analyze_sensitivity(CNN, DATA, levels=levels)
    with pytest.raises(InvalidOptionError, match=re.escape("metric 'f1' must be one of top1")):
        analyze_sensitivity(CNN, DATA, metric="f1")


def test_sweep_runs_the_sensitivity_allocation_from_the_file(tmp_path, capsys):
    sens = tmp_path / "sens"
    analyze_sensitivity(CNN, DATA, out=sens, levels=[0.5, 0.9])
    curves = str(sens / "sensitivity.json")
    sweep = ["sweep", CNN, "--data", DATA, "--out", str(tmp_path / "sweep"), "--sparsities", "0.8"]
    err = refused(capsys, *sweep, "--methods", "magnitude/sensitivity")
    assert err == "InvalidOptionError: method magnitude/sensitivity needs --sensitivity"
    err = refused(capsys, *sweep, "--sensitivity", curves)
    assert err == (
        "InvalidOptionError: --sensitivity is read by methods with allocation sensitivity only"
    )
    methods = "magnitude/global,magnitude/sensitivity"
    assert main([*sweep, "--methods", methods, "--sensitivity", curves]) == 0
    capsys.readouterr()
    runs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]
    assert [(r["method"], r["error"]) for r in runs] == [
        ("magnitude/global", None),
        ("magnitude/sensitivity", None),
    ]
    assert runs[1]["direct_sparsity"] == pytest.approx(0.8, abs=1e-9)  # 7,744 of 9,680


def _flattened(tmp_path) -> tuple[str, str]:
    """x[batch, 2, h, w] -> 1x1 Conv (4 channels) -> Relu -> Flatten -> MatMul [16, 3] -> y.

    Flatten spreads each channel over ``h * w`` features: structured pruning follows it only
    with ``h`` and ``w`` known (the MatMul's 16 rows are 4 channels of 2 x 2).
    """
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(4, 2, 1, 1)), rng.normal(size=(16, 3))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w2"], ["y"]),
    ]
    model = single_io_model(nodes, ["batch", 2, "h", "w"], ["batch", 3], {"w1": w1, "w2": w2})
    path, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    path.write_bytes(model.SerializeToString())
    np.savez(data, x=rng.normal(size=(5, 2, 2, 2)).astype(np.float32))
    return str(path), str(data)


def test_dims_fix_the_shapes_structured_curves_are_found_with(tmp_path, capsys):
    model, data = _flattened(tmp_path)
    flags = ["--levels", "0.5", "--structured", "--metric", "cosine"]
    assert main(["sensitivity", model, "--data", data, "--out", str(tmp_path / "a"), *flags]) == 0
    loose = json.loads((tmp_path / "a" / "sensitivity.json").read_text())
    assert loose["groups"] == []  # Flatten over symbolic h, w: the channels cannot be followed
    out = str(tmp_path / "b")
    assert main(["sensitivity", model, "--data", data, "--out", out, *flags, "--dim", "h=2",
                 "--dim", "w=2"]) == 0  # fmt: skip
    (curve,) = json.loads((tmp_path / "b" / "sensitivity.json").read_text())["groups"]
    assert (curve["layers"], curve["params"], curve["levels"]) == (["w1"], 4, [0.5])
    shape = ["--input-shape", "x=5,2,2,2"]  # the same, the whole input's shape given
    assert main(["sensitivity", model, "--data", data, "--out", str(tmp_path / "c"), *flags,
                 *shape]) == 0  # fmt: skip
    (again,) = json.loads((tmp_path / "c" / "sensitivity.json").read_text())["groups"]
    assert again == curve
    capsys.readouterr()
    err = refused(
        capsys, "sensitivity", model, "--data", data, "--out", out, *flags, "--dim", "t=3"
    )
    assert err.startswith("InvalidOptionError: ") and "'t'" in err
