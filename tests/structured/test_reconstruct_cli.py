"""``prune --structured --reconstruct`` from the command line, the report, batch and the server.

The digits CNN at 30% of its channels, calibrated on the first 64 test images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from onnxprune.batch import run_batch
from onnxprune.cli import main
from onnxprune.options import PruneOptions
from onnxprune.render import render_markdown

MODELS = Path(__file__).resolve().parents[2] / "models"
CNN = str(MODELS / "cnn_digits.onnx")
LAYERS = ["onnx::Conv_42", "onnx::Conv_45", "down.weight", "head.weight"]
"""The layers reading removed channels, in graph order (the stem reads the image)."""


@pytest.fixture
def calib(tmp_path) -> str:
    with np.load(MODELS / "digits_test.npz") as data:
        path = tmp_path / "calib.npz"
        np.savez(path, image=data["image"][:64])
    return str(path)


def _prune(tmp_path, *flags: str) -> list[str]:
    return ["prune", CNN, "-o", str(tmp_path / "s.onnx"), "--structured", "l1", *flags]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sparsity", "0.3", "--reconstruct"], "--reconstruct needs --calibration"),
        (["--sparsity", "0.3", "--ridge", "0.1"], "--ridge needs --reconstruct"),
        (
            ["--sparsity", "0.3", "--reconstruct", "--calibration", "CALIB", "--ridge", "-1"],
            "ridge=-1.0 must be a finite number >= 0",
        ),
        (
            ["--sparsity", "0.3", "--calibration", "CALIB"],
            "--structured takes no --calibration",
        ),
    ],
)
def test_refusals_are_one_line_and_exit_2(tmp_path, capsys, calib, flags, message):
    flags = [calib if f == "CALIB" else f for f in flags]
    assert main(_prune(tmp_path, *flags)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"InvalidOptionError: {message}"), captured.err
    assert not (tmp_path / "s.onnx").exists()


def test_reconstruct_needs_structured(tmp_path, capsys, calib):
    out = tmp_path / "p.onnx"
    assert main(["prune", CNN, "-o", str(out), "--sparsity", "0.3", "--reconstruct",
                 "--calibration", calib]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err == "InvalidOptionError: --reconstruct needs --structured\n"
    assert not out.exists()


def test_the_table_lists_each_layers_error_before_and_after(tmp_path, capsys, calib):
    report = tmp_path / "r.json"
    flags = ("--sparsity", "0.3", "--reconstruct", "--calibration", calib, "--report-out")
    assert main(_prune(tmp_path, *flags, str(report))) == 0
    text = capsys.readouterr().out
    assert "reconstructed on 64 calibration samples (ridge 0.01)" in text
    rows = re.findall(r"^  (\S+) \((\d+) of (\d+) inputs\): (\S+) -> (\S+)$", text, re.M)
    assert [r[0] for r in rows] == LAYERS
    for _, _, _, before, after in rows:
        assert float(after) < float(before)
    data = json.loads(report.read_text())
    refit = data["reconstruction"]
    assert [layer["name"] for layer in refit["layers"]] == LAYERS
    assert (refit["samples"], refit["ridge"], refit["batchnorms"]) == (64, 0.01, [])
    shown = {r[0]: (float(r[3]), float(r[4])) for r in rows}
    for layer in refit["layers"]:
        before, after = shown[layer["name"]]
        assert before == pytest.approx(layer["error_before"], rel=1e-3)
        assert after == pytest.approx(layer["error_after"], rel=1e-3)
    markdown = render_markdown(data)
    assert "## Reconstruction" in markdown
    assert "| down.weight | Conv | 12 | 16 |" in markdown


def test_json_and_a_smaller_ridge(tmp_path, capsys, calib):
    flags = ("--sparsity", "0.3", "--reconstruct", "--calibration", calib, "--json")
    assert main(_prune(tmp_path, *flags, "--ridge", "0.001")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reconstruction"]["ridge"] == 0.001
    assert main(_prune(tmp_path, "--sparsity", "0.3", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["reconstruction"] is None


def test_batch_reconstructs_on_each_models_data(tmp_path, calib):
    models = tmp_path / "models"
    models.mkdir()
    (models / "cnn.onnx").write_bytes(Path(CNN).read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    (data / "cnn.npz").write_bytes(Path(calib).read_bytes())
    options = PruneOptions(structured="l1", sparsity=0.3, reconstruct=True)
    batch = run_batch(models, tmp_path / "out", options=options, data_dir=data)
    assert batch.count("ok") == 1, batch.failed
    report = json.loads((tmp_path / "out" / "cnn.report.json").read_text())
    assert [layer["name"] for layer in report["reconstruction"]["layers"]] == LAYERS
