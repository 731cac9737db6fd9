"""A flag the chosen path would not use is refused (exit 2, one line), never silently ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.options import PruneOptions, check_prune
from tests.helpers import refused

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = str(MODELS / "mlp_digits.onnx")
DATA = str(MODELS / "digits_test.npz")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--nm", "2:4", "--allocation", "erk", "--min-threshold", "0.01"],
            "--nm takes no --allocation, --min-threshold (the N:M pattern fixes how many "
            "weights each layer keeps)",
        ),
        (["--nm", "2:4", "--effective"], "--nm takes no --effective"),
        (["--sparsity", "0.5", "--skip-indivisible"], "--skip-indivisible needs --nm"),
        (["--sparsity", "0.5", "--rounds", "5"], "--rounds is read by --score synflow only"),
        (
            ["--sparsity", "0.5", "--score", "lamp", "--calibration", DATA],
            "--calibration is read by --score activation or sparsegpt only",
        ),
        (
            ["--masks-in", "MASKS", "--score", "lamp", "--effective"],
            "--score, --effective need --sparsity or --nm (--masks-in alone only applies the "
            "masks)",
        ),
        (
            ["--sparsity", "0.5", "--scores", "MASKS", "--score", "lamp"],
            "give either --scores or --score, not both (the file's scores replace the score)",
        ),
    ],
)
def test_prune_refuses_what_its_path_ignores(tmp_path, capsys, flags, message):
    masks = tmp_path / "m.npz"
    np.savez(masks, **{"fc1.weight": np.ones((300, 64), bool)})
    flags = [str(masks) if f == "MASKS" else f for f in flags]
    out = tmp_path / "p.onnx"
    err = refused(capsys, "prune", MLP, "-o", str(out), *flags)
    assert err.startswith(f"InvalidOptionError: {message}")
    assert not out.exists()


def test_the_same_options_are_fine_where_they_are_read(tmp_path, capsys):
    out = str(tmp_path / "p.onnx")
    for flags in (
        ["--nm", "2:4", "--skip-indivisible"],
        ["--sparsity", "0.5", "--score", "synflow", "--rounds", "5"],
        ["--sparsity", "0.5", "--allocation", "erk", "--min-threshold", "0.001"],
    ):
        assert main(["prune", MLP, "-o", out, *flags]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_library_and_server_spelling():
    # The gRPC worker checks with the option names as they are (spell=str).
    with pytest.raises(InvalidOptionError, match=r"^nm takes no effective "):
        check_prune(PruneOptions(nm="2:4", effective=True))
    only = r"^calibration is read by score activation or sparsegpt only$"
    with pytest.raises(InvalidOptionError, match=only):
        check_prune(PruneOptions(sparsity=0.5), inputs=["calibration"])
    check_prune(PruneOptions(sparsity=0.5, score="activation"), inputs=["calibration"])


def test_batch_address_needs_ray(tmp_path, capsys):
    err = refused(capsys, "batch", str(MODELS), "--out", str(tmp_path / "out"), "--sparsity",
                   "0.5", "--address", "auto")  # fmt: skip
    assert err == (
        "InvalidOptionError: --address is the Ray cluster to join; it needs --executor ray"
    )
    assert not (tmp_path / "out").exists()  # refused before any model or folder


def _exits(capsys, *argv: str) -> str:
    """The one stderr line of an argparse refusal (``main`` exits 2 through ``SystemExit``)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    return captured.err.strip()


@pytest.mark.parametrize("flag", ["--min-time", "--min-runs", "--threads"])
@pytest.mark.parametrize(
    "command",
    [["analyze", MLP], ["prune", MLP, "-o", "OUT", "--sparsity", "0.5"],
     ["compact", MLP, "-o", "OUT"], ["batch", str(MODELS), "--out", "OUT", "--sparsity", "0.5"]],
)  # fmt: skip
def test_timing_flags_are_refused_where_nothing_is_timed(tmp_path, capsys, flag, command):
    out = tmp_path / "out"
    argv = [str(out) if part == "OUT" else part for part in command]
    assert _exits(capsys, *argv, flag, "2") == f"onnxprune: error: unrecognized arguments: {flag} 2"
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-time", "-1"], "min_time=-1.0 must be a number of seconds in [0, 3600]"),
        (["--min-time", "nan"], "min_time=nan must be a number of seconds in [0, 3600]"),
        (["--min-runs", "0"], "min_runs=0 must be an integer in [1, 1000000]"),
        (
            ["--threads", "-2"],
            "threads=-2 must be an integer in [0, 256] (0: ONNX Runtime's choice)",
        ),
    ],
)
def test_bad_timing_values_are_one_line_errors(tmp_path, capsys, flags, message):
    report = tmp_path / "r.json"
    argv = ["validate", MLP, "--data", DATA, "--report-out", str(report), *flags]
    assert refused(capsys, *argv) == f"InvalidOptionError: {message}"
    assert not report.exists()  # refused before any work
    out = tmp_path / "sweep"
    argv = ["sweep", MLP, "--data", DATA, "--sparsities", "0.5", "--out", str(out), *flags]
    assert refused(capsys, *argv) == f"InvalidOptionError: {message}"
    assert not out.exists()


@pytest.mark.parametrize(("flag", "kind"), [("--min-runs", "int"), ("--min-time", "float"),
                                            ("--threads", "int")])  # fmt: skip
def test_timing_values_that_are_not_numbers_are_one_line_errors(capsys, flag, kind):
    err = _exits(capsys, "validate", MLP, "--data", DATA, flag, "2.5s")
    assert err == f"onnxprune validate: error: argument {flag}: invalid {kind} value: '2.5s'"


def test_class_axis_needs_something_to_read_scores_against(tmp_path, capsys):
    inputs = tmp_path / "inputs.npz"
    with np.load(DATA) as data:
        np.savez(inputs, x=data["x"])  # no labels
    err = refused(capsys, "validate", MLP, "--data", str(inputs), "--class-axis", "-1")
    assert err == (
        "InvalidOptionError: class_axis reads scores against a baseline or labels; give "
        "--baseline or a dataset with 'labels'"
    )
    err = refused(capsys, "batch", str(MODELS), "--out", str(tmp_path / "out"), "--sparsity",
                  "0.5", "--class-axis", "-1")  # fmt: skip
    assert err == (
        "InvalidOptionError: class_axis is read on evaluation data, and no model has any "
        "(--data-dir, or a manifest entry's 'data')"
    )
    assert not (tmp_path / "out").exists()
