"""``onnxprune prune`` and ``onnxprune methods`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.cli import main
from tests.helpers import run_cli as _run

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = MODELS / "mlp_digits.onnx"


def _weights(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 2}


def test_prune_writes_model_masks_and_report(tmp_path, capsys):
    out = tmp_path / "pruned.onnx"
    report_path = tmp_path / "r.json"
    code = main(
        ["prune", str(MLP), "-o", str(out), "--sparsity", "0.9", "--report-out", str(report_path)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "direct sparsity:    90.0000%" in printed
    masks = np.load(tmp_path / "pruned.masks.npz")
    weights = _weights(out)
    assert set(masks.files) == set(weights) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for name in masks.files:
        assert masks[name].dtype == bool
        np.testing.assert_array_equal(masks[name], weights[name] != 0)
    report = json.loads(report_path.read_text())
    assert report["direct_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert onnx.load(out).ir_version == onnx.load(MLP).ir_version
    assert not list(tmp_path.glob(".*tmp*"))


def test_prune_with_allocation_min_threshold_and_masks_out(tmp_path):
    out, masks = tmp_path / "p.onnx", tmp_path / "m.npz"
    code = main(
        [
            "prune", str(MLP), "-o", str(out), "--allocation", "erk", "--sparsity", "0.95",
            "--min-threshold", "0.001", "--masks-out", str(masks), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    kept = {name: int(m.sum()) for name, m in np.load(masks).items()}
    total = sum(w.size for w in _weights(MLP).values())
    assert all(k >= np.ceil(0.001 * total) for k in kept.values())
    assert sum(kept.values()) == total - round(0.95 * total)


@pytest.mark.slow
def test_prune_effective_target_reports_analyses(tmp_path, capsys):
    out = tmp_path / "p.onnx"
    assert main(["prune", str(MLP), "-o", str(out), "--sparsity", "0.97", "--effective"]) == 0
    printed = capsys.readouterr().out
    assert "effective target reached in" in printed
    report = json.loads(_run("analyze", str(out), "--json").stdout)
    assert report["effective_sparsity"] <= 0.97
    assert report["effective_sparsity"] > 0.96


def test_prune_nm_and_masks_in(tmp_path):
    out = tmp_path / "nm.onnx"
    assert main(["prune", str(MLP), "-o", str(out), "--nm", "2:4"]) == 0
    for name, w in _weights(out).items():
        groups = (w != 0).reshape(w.shape[0], -1, 4)  # Gemm transB: [out, in], groups along in
        assert (groups.sum(axis=2) == 2).all(), name
    again = tmp_path / "again.onnx"
    masks = str(tmp_path / "nm.masks.npz")
    assert main(["prune", str(MLP), "-o", str(again), "--masks-in", masks]) == 0
    for name, w in _weights(again).items():
        np.testing.assert_array_equal(w != 0, _weights(out)[name] != 0)


def test_methods_lists_scores_and_allocations(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("magnitude", "random", "lamp", "synflow", "activation"):
        assert f"  {name} " in out
    for name in ("global", "uniform", "uniform+", "erk", "igq"):
        assert f"  {name} " in out
    structured = out[out.index("--structured:") :]
    for name in ("l1", "l2", "random"):
        assert f"  {name} " in structured


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--sparsity", "1.5"], "InvalidOptionError: sparsity=1.5 must be in [0, 1)"),
        (["--sparsity", "0.5", "--score", "nope"], "InvalidOptionError: unknown score 'nope'"),
        (["--sparsity", "0.5", "--allocation", "x"], "InvalidOptionError: unknown allocation"),
        (["--nm", "4:2"], "InvalidOptionError: "),
        (["--sparsity", "0.5", "--scores", "missing.npz"], "InvalidOptionError: scores file"),
    ],
)
def test_bad_prune_arguments_exit_2(tmp_path, args, error):
    result = _run("prune", str(MLP), "-o", str(tmp_path / "o.onnx"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.slow
def test_mismatched_scores_file_exits_2(tmp_path):
    scores = tmp_path / "s.npz"
    np.savez(scores, **{"fc1.weight": np.ones((300, 64))})
    result = _run("prune", str(MLP), "-o", str(tmp_path / "o.onnx"), "--sparsity", "0.5",
                  "--scores", str(scores))  # fmt: skip
    assert result.returncode == 2
    assert "scores lack 2 weight(s)" in result.stderr


@pytest.mark.slow
def test_prune_never_overwrites_its_input(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(MLP.read_bytes())
    before = model.read_bytes()
    result = _run("prune", str(model), "-o", str(model), "--sparsity", "0.5")
    assert result.returncode == 2
    assert "overwrite the input" in result.stderr
    assert model.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["--score", "activation", "--calibration", str(MODELS / "digits_test.npz")],
        ["--score", "sparsegpt", "--calibration", str(MODELS / "digits_test.npz")],
        ["--score", "synflow", "--rounds", "10"],
        ["--score", "lamp", "--allocation", "igq"],
        ["--score", "random", "--seed", "7", "--allocation", "uniform+"],
    ],
    ids=["activation", "sparsegpt", "synflow", "lamp-igq", "random-uniform+"],
)
def test_every_method_runs_from_the_cli(tmp_path, extra):
    out = tmp_path / "p.onnx"
    sparsity = "0.1" if "uniform+" in extra else "0.8"
    result = _run("prune", str(MLP), "-o", str(out), "--sparsity", sparsity, "--json", *extra)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    total = report["total_params"]
    assert report["direct_sparsity"] == pytest.approx(float(sparsity), abs=1 / total)
    masks = np.load(tmp_path / "p.masks.npz")
    assert sum(int((~m).sum()) for m in masks.values()) == round(float(sparsity) * total)


def test_sparsegpt_from_the_cli_and_its_refusals(tmp_path):
    out = tmp_path / "p.onnx"
    data = str(MODELS / "digits_test.npz")
    result = _run("prune", str(MLP), "-o", str(out), "--score", "sparsegpt", "--nm", "2:4")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "DatasetError: the sparsegpt score needs calibration data; none given "
        "(wants x: float32[batch, 64])"
    ]
    assert not out.exists()
    lamp = _run("prune", str(MLP), "-o", str(out), "--sparsity", "0.5", "--calibration", data)
    assert lamp.returncode == 2
    assert lamp.stderr.strip() == (
        "InvalidOptionError: --calibration is read by --score activation or sparsegpt only"
    )
    args = ["--score", "sparsegpt", "--calibration", data, "--nm", "2:4", "--json"]
    result = _run("prune", str(MLP), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["direct_sparsity"] == pytest.approx(0.5)
    weights, masks = _weights(out), np.load(tmp_path / "p.masks.npz")
    original = _weights(MLP)
    for name, mask in masks.items():  # Gemm transB=1: [N, K], runs of 4 along K
        assert (mask.reshape(mask.shape[0], -1, 4).sum(axis=2) == 2).all()
        np.testing.assert_array_equal(weights[name] != 0, mask)
        assert not np.array_equal(weights[name][mask], original[name][mask])  # re-fitted
