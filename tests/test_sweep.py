"""Sweeps: every method at every sparsity, validated, in one process or several."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxprune import InvalidOptionError, analyze
from onnxprune.sweep import format_sweep, parse_methods, parse_sparsities, sweep, sweep_warnings
from tests.helpers import QUICK_TIMING, run_cli

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
        **QUICK_TIMING,
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
    one = sweep(MLP, DATA, tmp_path / "one", jobs=1, **kwargs, **QUICK_TIMING)
    two = sweep(MLP, DATA, tmp_path / "two", jobs=2, **kwargs, **QUICK_TIMING)
    assert _summary(one) == _summary(two)


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path):
    # uniform+ keeps the first (largest) layer dense: 90% is out of reach for LeNet-300-100.
    result = sweep(
        MLP,
        DATA,
        tmp_path,
        sparsities=[0.1, 0.9],
        methods=[("magnitude", "uniform+")],
        **QUICK_TIMING,
    )
    ok, failed = result.runs
    assert ok.error is None and ok.direct_sparsity == pytest.approx(0.1, abs=1e-4)
    assert failed.error.startswith("InvalidOptionError: ") and failed.top1 is None
    assert result.failed == (failed,)


def test_every_run_is_timed_against_the_dense_model_with_an_interval(tmp_path):
    # digits_test.npz: 450 samples; batches of 100 make 5 (enough to time without a warning).
    result = sweep(
        MLP, DATA, tmp_path, sparsities=[0.5, 0.9], methods=[("magnitude", "global")],
        batch_size=100, min_time=0.0, min_runs=30, threads=1,
    )  # fmt: skip
    assert (result.dense.timed_runs, result.dense.threads) == (30, 1)
    document = json.loads((tmp_path / "sweep.json").read_text())
    for run, written in zip(result.runs, document["runs"], strict=True):
        assert 0 < run.speedup_low <= run.speedup <= run.speedup_high
        assert [written[k] for k in ("speedup", "speedup_low", "speedup_high")] == [
            run.speedup, run.speedup_low, run.speedup_high
        ]  # fmt: skip
        assert written["warnings"] == list(run.warnings)
    table = format_sweep(result).splitlines()
    assert "  speedup (95% CI)  " in table[0]
    first = result.runs[0]
    assert (
        f"  {first.speedup:.2f}x ({first.speedup_low:.2f}-{first.speedup_high:.2f})  " in (table[3])
    )


def test_the_gate_recommends_the_most_compressed_run_that_passes(tmp_path):
    methods = [("magnitude", "global"), ("lamp", "erk")]
    result = sweep(MLP, DATA, tmp_path, sparsities=[0.5, 0.8, 0.99], methods=methods,
                   max_accuracy_drop=0.05, **QUICK_TIMING)  # fmt: skip
    dense = result.dense.top1
    for run in result.runs:
        # the gate as the flag says it: at most 5 points below the dense model's top-1
        assert run.passed == (dense - run.top1 <= 0.05), run.gate_reason
        assert run.size_bytes == (tmp_path / run.model_path).stat().st_size
    assert result.runs[2].passed is False  # 99% of LeNet-300-100 is near chance
    passing = [r for r in result.runs if r.passed]
    fewest = min(r.nonzero_macs for r in passing)
    smallest = min(r.size_bytes for r in passing if r.nonzero_macs == fewest)
    best = next(r for r in passing if (r.nonzero_macs, r.size_bytes) == (fewest, smallest))
    assert result.recommended == best
    document = json.loads((tmp_path / "sweep.json").read_text())
    assert document["recommended"] == best.model_path
    assert (document["gated"], document["classes"]) == (True, 10)
    # the fronts, by brute force: no other run at least as good in both and better in one
    for i, run in enumerate(document["runs"]):
        for key, better in (("nonzero_macs", lambda a, b: a < b), ("speedup", lambda a, b: a > b)):
            beaten = any(
                o["top1"] >= run["top1"]
                and (o[key] == run[key] or better(o[key], run[key]))
                and (o["top1"], o[key]) != (run["top1"], run[key])
                for j, o in enumerate(document["runs"])
                if j != i
            )
            front = "front_macs" if key == "nonzero_macs" else "front_speedup"
            assert run[front] is not beaten
    lines = format_sweep(result).splitlines()
    assert lines[-1].startswith(f"recommended: {best.method} at {best.sparsity:g} ")


def test_a_gate_nothing_passes_recommends_none(tmp_path):
    result = sweep(MLP, DATA, tmp_path, sparsities=[0.99], methods=[("magnitude", "global")],
                   min_agreement=0.9, **QUICK_TIMING)  # fmt: skip
    assert result.runs[0].passed is False and result.recommended is None
    assert format_sweep(result).splitlines()[-1] == "recommended: none passes the gate"
    assert json.loads((tmp_path / "sweep.json").read_text())["recommended"] is None
    with pytest.raises(InvalidOptionError, match=r"--min-agreement 1\.5 must be a fraction"):
        sweep(MLP, DATA, tmp_path / "bad", sparsities=[0.5], methods=[("magnitude", "global")],
              min_agreement=1.5)  # fmt: skip


def test_few_batches_warn_once_for_the_whole_sweep(tmp_path):
    result = sweep(
        MLP, DATA, tmp_path, sparsities=[0.5, 0.9], methods=[("magnitude", "global")],
        batch_size=1000, min_time=0.0, min_runs=5,
    )  # fmt: skip
    few = "only 1 distinct batch(es) were timed"
    assert all(run.warnings[0].startswith(few) for run in result.runs)
    lines = [line for line in sweep_warnings(result) if few in line]
    assert len(lines) == 1 and lines[0].startswith(f"dense model: {few}")


def test_bad_timing_options_are_refused_before_any_run(tmp_path):
    with pytest.raises(InvalidOptionError, match=r"^min_runs=0 must be an integer in \[1, "):
        sweep(MLP, DATA, tmp_path / "out", sparsities=[0.5], methods=[("magnitude", "global")],
              min_runs=0)  # fmt: skip
    assert not (tmp_path / "out").exists()


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
    gated = run_cli(
        "sweep", str(MLP), "--data", str(DATA), "--sparsities", "0.99", "--methods",
        "magnitude/global", "--out", str(tmp_path / "gated"), "--min-agreement", "0.9",
    )  # fmt: skip
    assert gated.returncode == 3
    assert "gate FAILED: no run passes the gate" in gated.stderr
    assert "recommended: none passes the gate" in gated.stdout


def test_sweep_calibrates_sparsegpt_on_its_data(tmp_path):
    # A score that reads calibration data gets the evaluation inputs, as activation does.
    result = sweep(
        MLP,
        DATA,
        tmp_path,
        sparsities=[0.7],
        methods=[("sparsegpt", "uniform"), ("magnitude", "uniform")],
        **QUICK_TIMING,
    )
    sparsegpt, magnitude = result.runs
    assert sparsegpt.method == "sparsegpt/uniform" and sparsegpt.error is None
    assert sparsegpt.direct_sparsity == pytest.approx(0.7, abs=1e-4)
    assert sparsegpt.agreement > magnitude.agreement


METRIC = """
import numpy as np

def accuracy(outputs, labels):
    return float((outputs["logits"].argmax(1) == labels).mean())
"""


def _logits(path: Path) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.load(DATA)["x"]})[0].astype(np.float64)


def test_sweep_records_the_comparisons_and_a_user_metric_in_worker_processes(tmp_path):
    module = tmp_path / "my_metric.py"
    module.write_text(METRIC)
    out = tmp_path / "out"
    result = sweep(
        MLP,
        DATA,
        out,
        sparsities=[0.5, 0.95],
        methods=[("magnitude", "global")],
        jobs=2,
        metric=f"{module}:accuracy",
        **QUICK_TIMING,
    )
    labels = np.load(DATA)["labels"]
    dense = _logits(MLP)
    assert result.dense.user_metrics == {"accuracy": pytest.approx(result.dense.top1)}
    for run in result.runs:
        pruned = _logits(out / run.model_path)
        cosine = (
            (pruned * dense).sum(1) / np.linalg.norm(pruned, axis=1) / np.linalg.norm(dense, axis=1)
        )
        assert run.user_metrics == {"accuracy": pytest.approx(np.mean(pruned.argmax(1) == labels))}
        assert run.comparison["cosine"] == pytest.approx(cosine.mean(), rel=1e-6)
        assert run.comparison["worst_cosine"] == pytest.approx(cosine.min(), rel=1e-6)
        assert run.comparison["max_abs_error"] == pytest.approx(
            np.abs(pruned - dense).max(), rel=1e-5
        )
    assert result.runs[1].comparison["cosine"] < result.runs[0].comparison["cosine"]
    document = json.loads((out / "sweep.json").read_text())
    assert document["runs"][0]["comparison"] == pytest.approx(dict(result.runs[0].comparison))
    assert document["runs"][1]["user_metrics"] == dict(result.runs[1].user_metrics)
    header, _, dense_row, first_row, *_ = format_sweep(result).splitlines()
    assert header.split()[-1] == "accuracy"
    assert header.index("cosine") < header.index("speedup") < header.index("accuracy")
    assert dense_row.split()[-1] == f"{result.dense.user_metrics['accuracy']:.6g}"
    cosine = f"{result.runs[0].comparison['cosine']:.4f}"
    assert first_row[header.index("cosine") :].split()[0] == cosine
    assert first_row.split()[-1] == f"{result.runs[0].user_metrics['accuracy']:.6g}"


def test_a_metric_that_cannot_load_stops_the_sweep_before_any_run(tmp_path):
    with pytest.raises(InvalidOptionError, match=r"^metric 'nope_m16:f': cannot import nope_m16"):
        sweep(MLP, DATA, tmp_path / "out", sparsities=[0.5], methods=[("magnitude", "global")],
              metric="nope_m16:f")  # fmt: skip
    assert not (tmp_path / "out").exists()
