"""Sweeps: every method at every sparsity, validated, in one process or several."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxprune import InvalidOptionError, analyze
from onnxprune.sweep import parse_methods, parse_sparsities, sweep
from tests.helpers import run_cli

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP, DATA = MODELS / "mlp_digits.onnx", MODELS / "digits_test.npz"


def _summary(result):
    return [
        (r.method, r.sparsity, r.direct_sparsity, r.effective_sparsity, r.top1, r.agreement)
        for r in result.runs
    ]


def test_sweep_prunes_validates_and_writes_everything(tmp_path):
    done = []
    result = sweep(
        MLP,
        DATA,
        tmp_path,
        sparsities=[0.5, 0.9],
        methods=[("magnitude", "global"), ("lamp", "erk")],
        on_done=done.append,
    )
    assert len(result.runs) == len(done) == 4
    assert [(r.method, r.sparsity) for r in result.runs] == [
        ("magnitude/global", 0.5),
        ("magnitude/global", 0.9),
        ("lamp/erk", 0.5),
        ("lamp/erk", 0.9),
    ]
    labels = np.load(DATA)["labels"]
    assert result.dense.samples == labels.size
    for run in result.runs:
        assert run.error is None
        assert run.direct_sparsity == pytest.approx(run.sparsity, abs=1e-4)
        assert run.effective_sparsity >= run.direct_sparsity
        # the written model is what the run reports
        written = analyze(tmp_path / run.model_path)
        assert written.direct_sparsity == pytest.approx(run.direct_sparsity)
        report = json.loads((tmp_path / run.report_path).read_text())
        assert report["effective_sparsity"] == pytest.approx(run.effective_sparsity)
        assert (tmp_path / run.model_path.replace(".onnx", ".masks.npz")).exists()
        assert 0.0 <= run.top1 <= 1.0 and 0.0 <= run.agreement <= 1.0
    # more pruning costs accuracy on this model
    assert result.runs[1].top1 < result.runs[0].top1 <= result.dense.top1 + 0.02
    document = json.loads((tmp_path / "sweep.json").read_text())
    assert document["kind"] == "sweep" and len(document["runs"]) == 4
    assert document["dense"]["top1"] == pytest.approx(result.dense.top1)


def test_parallel_jobs_give_the_same_results(tmp_path):
    kwargs = {"sparsities": [0.8], "methods": [("magnitude", "uniform"), ("random", "igq")]}
    one = sweep(MLP, DATA, tmp_path / "one", jobs=1, **kwargs)
    two = sweep(MLP, DATA, tmp_path / "two", jobs=2, **kwargs)
    assert _summary(one) == _summary(two)


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path):
    # uniform+ keeps the first (largest) layer dense: 90% is out of reach for LeNet-300-100.
    result = sweep(
        MLP,
        DATA,
        tmp_path,
        sparsities=[0.1, 0.9],
        methods=[("magnitude", "uniform+")],
    )
    ok, failed = result.runs
    assert ok.error is None and ok.direct_sparsity == pytest.approx(0.1, abs=1e-4)
    assert failed.error.startswith("InvalidOptionError: ") and failed.top1 is None
    assert result.failed == (failed,)


@pytest.mark.parametrize(
    ("text", "message"),
    [("magnitude", "SCORE/ALLOCATION"), ("nope/global", "unknown score"), ("lamp/x", "unknown")],
)
def test_bad_methods(text, message):
    with pytest.raises(InvalidOptionError, match=message):
        parse_methods(text)


@pytest.mark.parametrize("text", ["0.5,1.0", "a", "-0.1", ""])
def test_bad_sparsities(text):
    with pytest.raises(InvalidOptionError):
        parse_sparsities(text)


@pytest.mark.slow
def test_cli_sweep_prints_the_table_and_exit_codes(tmp_path):
    out = tmp_path / "sweep"
    ok = run_cli(
        "sweep", str(MLP), "--data", str(DATA), "--sparsities", "0.5,0.8",
        "--methods", "magnitude/global", "--out", str(out),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].split()[:4] == ["method", "target", "direct", "effective"]
    assert sum(line.startswith("magnitude/global") for line in lines) == 2
    assert (out / "sweep.json").exists()
    assert "%" not in ok.stderr  # no progress bar when stderr is not a terminal
    partly = run_cli(
        "sweep", str(MLP), "--data", str(DATA), "--sparsities", "0.1,0.9",
        "--methods", "magnitude/uniform+", "--out", str(tmp_path / "partly"),
    )  # fmt: skip
    assert partly.returncode == 4
    assert "failed" in partly.stderr and "uniform+" in partly.stderr
    bad = run_cli("sweep", str(MLP), "--data", str(DATA), "--sparsities", "2", "--methods",
                  "magnitude/global", "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("InvalidOptionError: ")


def test_sweep_calibrates_sparsegpt_on_its_data(tmp_path):
    # A score that reads calibration data gets the evaluation inputs, as activation does.
    result = sweep(
        MLP,
        DATA,
        tmp_path,
        sparsities=[0.7],
        methods=[("sparsegpt", "uniform"), ("magnitude", "uniform")],
    )
    sparsegpt, magnitude = result.runs
    assert sparsegpt.method == "sparsegpt/uniform" and sparsegpt.error is None
    assert sparsegpt.direct_sparsity == pytest.approx(0.7, abs=1e-4)
    assert sparsegpt.agreement > magnitude.agreement
