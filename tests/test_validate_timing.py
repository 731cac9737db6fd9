"""The baseline is timed too: its latencies, the speedup, fair interleaving, JSON and text.

The model is the small MLP of ``test_validate``: x[N, 6] -> MatMul -> Add -> Relu -> MatMul -> Add
-> y[N, 7], about 100 multiply-adds a sample. The slow baseline is the same MLP plus a side chain
that cannot change its output: x -> MatMul A[6, 1024] -> 8 x (MatMul M[1024, 1024] -> Tanh) ->
ReduceMean over axis 1 -> Mul 0 -> Add to the MLP's logits. Tanh keeps the chain finite, so adding
0 times it leaves y exactly as it was (agreement 1, difference 0), while each sample costs about
8 * 1024 * 1024 = 8.4 million multiply-adds more: some 80,000 times the MLP's work (measured on a
2-core CPU: about 60x its latency per batch of 10, where fixed per-run costs weigh most), far
beyond what timing noise can turn around. No test here compares a time with a fixed number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.cli import main
from onnxprune.report import ValidationResult, format_validation
from onnxprune.validation import Dataset, _Runner, validate
from tests.helpers import single_io_model
from tests.test_validate import (
    B1,
    B2,
    BASELINE,
    LABELS,
    MODEL,
    W1,
    W2,
    N,
    X,
    _assert_metrics,
    _reference,
)

WIDTH, DEPTH = 1024, 8
TIMED = ("baseline_latency_ms_p50", "baseline_latency_ms_p95", "speedup")


def _slow_twin() -> onnx.ModelProto:
    """``MODEL`` with a heavy side chain whose contribution to y is exactly 0 (see above)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Add", ["h", "B1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["z"]),
        helper.make_node("Add", ["z", "B2"], ["logits"]),
        helper.make_node("MatMul", ["x", "A"], ["t0"]),
    ]
    for i in range(DEPTH):
        nodes += [
            helper.make_node("MatMul", [f"t{i}", "M"], [f"m{i}"]),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i + 1}"]),
        ]
    nodes += [
        helper.make_node("ReduceMean", [f"t{DEPTH}"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["y"]),
    ]
    inits = {
        "W1": W1,
        "B1": B1,
        "W2": W2,
        "B2": B2,
        "A": rng.standard_normal((W1.shape[0], WIDTH)),
        "M": rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH),
        "zero": np.zeros(1),
    }
    return single_io_model(nodes, ["N", W1.shape[0]], ["N", W2.shape[1]], inits)


def _data() -> Dataset:
    return Dataset(inputs={"x": X}, labels=LABELS, samples=N)


def test_with_a_baseline_its_latency_and_the_speedup_are_reported() -> None:
    result = validate(MODEL, _data(), baseline=BASELINE, provider="cpu", batch_size=10)
    assert 0 < result.baseline_latency_ms_p50 <= result.baseline_latency_ms_p95
    assert 0 < result.latency_ms_p50 <= result.latency_ms_p95
    assert result.speedup == result.baseline_latency_ms_p50 / result.latency_ms_p50
    data = json.loads(json.dumps(result.to_dict()))
    assert [data[key] for key in TIMED] == [getattr(result, key) for key in TIMED]


def test_without_a_baseline_there_is_no_baseline_latency_nor_speedup() -> None:
    result = validate(MODEL, _data(), provider="cpu", batch_size=10)
    assert result.latency_ms_p50 > 0
    assert [getattr(result, key) for key in TIMED] == [None, None, None]
    assert [result.to_dict()[key] for key in TIMED] == [None, None, None]
    assert "vs baseline" not in format_validation(result)


def test_a_much_slower_baseline_gives_a_speedup_above_1() -> None:
    slow = _slow_twin()
    result = validate(MODEL, _data(), baseline=slow, provider="cpu", batch_size=10)
    # The side chain leaves the output as it was: this is the same model, only slower.
    assert result.agreement == 1.0
    assert result.max_abs_diff == 0.0
    assert result.speedup > 1
    assert 1 < result.speedup_low <= result.speedup <= result.speedup_high
    assert result.baseline_latency_ms_p50 > result.latency_ms_p50
    line = format_validation(result).splitlines()[-2]
    assert line.startswith("vs baseline: p50 ")
    ci = f"95% CI {result.speedup_low:.2f}-{result.speedup_high:.2f}x"
    assert line.endswith(f"   {result.speedup:.2f}x faster ({ci})")


def test_runs_are_interleaved_batch_by_batch_and_the_order_alternates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx.save(MODEL, tmp_path / "m.onnx")
    onnx.save(BASELINE, tmp_path / "b.onnx")
    calls = []
    run = _Runner.run

    def recording(self: _Runner, feeds: dict) -> np.ndarray:
        calls.append((self.name[0], len(feeds["x"]), float(feeds["x"][0, 0])))
        return run(self, feeds)

    monkeypatch.setattr(_Runner, "run", recording)
    # 50 samples in batches of 20: 20, 20, 10; one run each is enough (no minimum time).
    validate(
        tmp_path / "m.onnx", _data(), baseline=tmp_path / "b.onnx", provider="cpu",
        batch_size=20, warmup=2, min_time=0, min_runs=1,
    )  # fmt: skip
    first, second, third = (float(X[i, 0]) for i in (0, 20, 40))
    assert calls == [
        ("m", 20, first), ("b", 20, first), ("m", 20, first), ("b", 20, first),  # warmup
        ("m", 20, first), ("b", 20, first),  # batch 0: the model first
        ("b", 20, second), ("m", 20, second),  # batch 1: the baseline first
        ("m", 10, third), ("b", 10, third),  # batch 2: the model first again
    ]  # fmt: skip
    calls.clear()
    # 7 runs per side: the batches again from the first, the order still alternating by round.
    result = validate(
        tmp_path / "m.onnx", _data(), baseline=tmp_path / "b.onnx", provider="cpu",
        batch_size=20, warmup=0, min_time=0, min_runs=7,
    )  # fmt: skip
    assert calls == [
        ("m", 20, first), ("b", 20, first), ("b", 20, second), ("m", 20, second),
        ("m", 10, third), ("b", 10, third), ("b", 20, first), ("m", 20, first),
        ("m", 20, second), ("b", 20, second), ("b", 10, third), ("m", 10, third),
        ("m", 20, first), ("b", 20, first),
    ]  # fmt: skip
    assert result.timed_runs == 7
    # Accuracy counts the first pass only: each sample once, whatever the repeats.
    _assert_metrics(result, _reference(LABELS))


def _result(**timings: float | None) -> ValidationResult:
    return ValidationResult(
        model="small.onnx", baseline="model.onnx", provider="CPUExecutionProvider",
        baseline_provider="CPUExecutionProvider", samples=100, batch_size=10, top1=None,
        top5=None, baseline_top1=None, baseline_top5=None, agreement=1.0, max_abs_diff=0.0,
        mean_abs_diff=0.0, latency_ms_p50=0.23, latency_ms_p95=0.285, throughput=43478.26,
        gate=None, **timings,
    )  # fmt: skip


def test_text_shows_the_baseline_latency_and_the_speedup() -> None:
    faster = _result(baseline_latency_ms_p50=0.61, baseline_latency_ms_p95=0.7, speedup=0.61 / 0.23)
    lines = format_validation(faster).splitlines()
    assert lines[-3:] == [
        "latency:     p50 0.230 ms   p95 0.285 ms per batch   throughput 43,478 samples/s",
        "vs baseline: p50 0.610 ms   p95 0.700 ms per batch   2.65x faster",
        "gate:        none",
    ]
    timed = _result(
        baseline_latency_ms_p50=0.61, baseline_latency_ms_p95=0.7, speedup=0.61 / 0.23,
        latency_ms_p90=0.27, baseline_latency_ms_p90=0.65, speedup_low=2.5, speedup_high=2.8,
        speedup_confidence=0.95, timed_runs=1200, threads=1,
    )  # fmt: skip
    assert format_validation(timed).splitlines()[-4:] == [
        "latency:     p50 0.230 ms   p90 0.270 ms   p95 0.285 ms per batch   throughput 43,478 "
        "samples/s",
        "timing:      1,200 runs per side after warm-up, 1 intra-op thread",
        "vs baseline: p50 0.610 ms   p90 0.650 ms   p95 0.700 ms per batch   2.65x faster "
        "(95% CI 2.50-2.80x)",
        "gate:        none",
    ]
    default_threads = format_validation(_result(timed_runs=20, threads=0)).splitlines()[-2]
    assert default_threads == (
        "timing:      20 runs per side after warm-up, ONNX Runtime's default intra-op threads"
    )
    slower = _result(baseline_latency_ms_p50=0.184, baseline_latency_ms_p95=0.2, speedup=0.8)
    assert format_validation(slower).splitlines()[-2] == (
        "vs baseline: p50 0.184 ms   p95 0.200 ms per batch   0.80x as fast (slower)"
    )
    untimed = format_validation(_result()).splitlines()
    assert untimed[-2].startswith("latency:     p50 0.230 ms")


def test_cli_json_and_text_show_the_baseline_timings(tmp_path: Path, capsys) -> None:
    onnx.save(MODEL, tmp_path / "small.onnx")
    onnx.save(_slow_twin(), tmp_path / "model.onnx")
    np.savez(tmp_path / "eval.npz", x=X, labels=LABELS)
    args = [
        "validate", str(tmp_path / "small.onnx"), "--data", str(tmp_path / "eval.npz"),
        "--baseline", str(tmp_path / "model.onnx"), "--provider", "cpu", "--batch-size", "10",
    ]  # fmt: skip
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0 < printed["baseline_latency_ms_p50"] <= printed["baseline_latency_ms_p95"]
    assert printed["speedup"] == printed["baseline_latency_ms_p50"] / printed["latency_ms_p50"]
    assert printed["speedup"] > 1
    assert printed["speedup_low"] <= printed["speedup"] <= printed["speedup_high"]
    assert printed["speedup_confidence"] == 0.95
    assert main(args) == 0
    text = capsys.readouterr().out
    vs = next(line for line in text.splitlines() if line.startswith("vs baseline: p50 "))
    assert re.search(r"x faster \(95% CI \d+\.\d\d-\d+\.\d\dx\)$", vs), vs


def test_a_model_compared_with_itself_has_a_speedup_interval_around_1() -> None:
    # Two sessions of one model: the true speedup is 1. 99.9% intervals from 60 paired runs
    # are generous enough for the small differences two sessions of one model can still show.
    result = validate(
        MODEL, _data(), baseline=MODEL, provider="cpu", batch_size=10, min_time=0,
        min_runs=60, confidence=0.999,
    )  # fmt: skip
    assert result.timed_runs == 60
    assert result.speedup_low <= 1.0 <= result.speedup_high
    assert result.speedup_confidence == 0.999
    assert not any("distinct batch" in w for w in result.warnings)  # 5 batches: enough


def test_a_one_batch_dataset_is_timed_with_a_warning() -> None:
    # The case that read 0.03x to 6.38x when each side was timed once: now many runs of the one
    # batch, an interval around 1, and a warning that one batch cannot represent the data.
    one = Dataset(inputs={"x": X[:1]}, labels=LABELS[:1], samples=1)
    result = validate(
        MODEL, one, baseline=MODEL, provider="cpu", min_time=0, min_runs=60, confidence=0.999
    )
    assert result.timed_runs == 60
    assert result.speedup_low <= 1.0 <= result.speedup_high
    assert result.warnings[0].startswith("only 1 distinct batch(es) were timed (fewer than 5)")
    alone = validate(MODEL, one, provider="cpu", min_time=0, min_runs=5)
    assert alone.speedup is None and alone.speedup_low is None
    assert alone.warnings == result.warnings[:1]  # the model alone is timed on one batch too


def test_threads_are_recorded_and_set_on_both_sessions() -> None:
    for threads in (1, 2, 0):
        result = validate(
            MODEL, _data(), baseline=MODEL, provider="cpu", batch_size=10, min_time=0,
            min_runs=1, threads=threads,
        )  # fmt: skip
        assert result.threads == threads
        assert result.to_dict()["threads"] == threads


@pytest.mark.parametrize("threads", [0, 1, 2])
@pytest.mark.parametrize("in_memory", [True, False])
def test_idle_workers_sleep_so_a_side_never_spins_on_the_cores_of_the_other(
    tmp_path: Path, threads: int, in_memory: bool
) -> None:
    # Both sides' sessions, from a proto or a file, are made with spinning off (intra- and
    # inter-op pools) and the threads asked: ONNX Runtime reports its own options back.
    onnx.save(MODEL, tmp_path / "m.onnx")
    source = MODEL if in_memory else tmp_path / "m.onnx"
    dataset = Dataset(inputs={"x": X}, labels=None, samples=len(X))
    session = _Runner.start(source, MODEL, dataset, "cpu", threads).session
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"


def test_the_cli_prints_timing_warnings_on_stderr_and_records_them(tmp_path: Path, capsys) -> None:
    onnx.save(MODEL, tmp_path / "m.onnx")
    np.savez(tmp_path / "one.npz", x=X[:3], labels=LABELS[:3])
    args = [
        "validate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "one.npz"), "--baseline",
        str(tmp_path / "m.onnx"), "--provider", "cpu", "--min-time", "0", "--min-runs", "30",
        "--threads", "2", "--report-out", str(tmp_path / "r.json"),
    ]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    warning = next(w for w in captured.err.splitlines() if "distinct batch" in w)
    assert warning.startswith("warning: only 1 distinct batch(es) were timed")
    assert "distinct batch" not in captured.out
    assert "timing:      30 runs per side after warm-up, 2 intra-op threads" in captured.out
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["warnings"][0] == warning.removeprefix("warning: ")
    assert (written["timed_runs"], written["threads"]) == (30, 2)
