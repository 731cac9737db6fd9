"""Progress of long work: what the library reports, and the bars a terminal shows."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

import onnxprune
from onnxprune import progress
from onnxprune.batch.executors import _waiting_for

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = MODELS / "mlp_digits.onnx"
CNN = MODELS / "cnn_digits.onnx"


def _collect(fn) -> tuple[object, list[progress.Progress]]:
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        result = fn()
    return result, seen


def test_nobody_listening_costs_nothing_and_raises_nothing():
    progress.report("stage", 1, 2, "note")  # no listener: no effect


def test_an_effective_target_reports_each_analysis():
    result, seen = _collect(lambda: onnxprune.prune(MLP, sparsity=0.9, effective=True))
    steps = [p for p in seen if p.stage == "effective target"]
    assert [p.done for p in steps] == list(range(1, result.analyses + 1))
    assert len({p.total for p in steps}) == 1  # one estimate for the whole search
    assert all(p.done <= p.total for p in steps)
    assert steps[-1].note.endswith("removed")
    stages = [p.stage for p in seen]
    assert (
        stages.index("analyze") < stages.index("score (magnitude)") < stages.index(steps[0].stage)
    )


def test_synflow_reports_its_rounds():
    _, seen = _collect(lambda: onnxprune.prune(MLP, sparsity=0.5, score="synflow", rounds=7))
    rounds = [p for p in seen if p.stage == "synflow"]
    assert [(p.done, p.total) for p in rounds] == [(i, 7) for i in range(7)]


def test_calibration_reports_the_samples_done():
    data = np.load(MODELS / "digits_test.npz")
    calibration = {"x": data["x"][:70]}
    _, seen = _collect(
        lambda: onnxprune.prune(MLP, sparsity=0.5, score="activation", calibration=calibration)
    )
    done = [p.done for p in seen if p.stage == "calibration"]
    assert done == sorted(done)
    assert done[-1] == 70
    assert all(p.total == 70 for p in seen if p.stage == "calibration")


def test_exact_analysis_reports_both_passes():
    _, seen = _collect(lambda: onnxprune.analyze(CNN, level="exact"))
    passes = [p for p in seen if p.stage == "exact analysis"]
    assert [p.done for p in passes] == list(range(passes[0].total))
    assert passes[0].total % 2 == 0  # one report per step, forward then backward


def test_listening_ends_with_its_block():
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        progress.report("inside", 1)
    progress.report("outside", 1)
    assert [p.stage for p in seen] == ["inside"]


def test_fraction_is_clamped_and_none_without_a_total():
    assert progress.Progress("s", 3, 4).fraction == 0.75
    assert progress.Progress("s", 5, 4).fraction == 1.0
    assert progress.Progress("s", 5).fraction is None


def test_bars_draw_each_stage_when_enabled(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.bars(enabled=True):
        progress.report("first stage", 1, 4)
        progress.report("first stage", 4, 4, "almost")
        progress.report("second stage", 0)
    shown = err.getvalue()
    assert "first stage" in shown
    assert "almost" in shown
    assert "second stage" in shown


def test_bars_are_off_when_output_is_not_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.bars():  # StringIO is no terminal
        progress.report("stage", 1, 2)
    assert err.getvalue() == ""


def test_the_cli_draws_bars_on_a_terminal_and_nothing_in_a_pipe(tmp_path):
    def command(output: str) -> list[str]:
        prune = ["prune", str(MLP), "-o", str(tmp_path / output), "--sparsity", "0.9"]
        return [sys.executable, "-m", "onnxprune.cli", *prune, "--effective"]

    piped = subprocess.run(command("piped.onnx"), capture_output=True, text=True, check=True)
    assert "effective target" not in piped.stderr
    assert "effective target" in _on_a_terminal(command("terminal.onnx"))


def _on_a_terminal(command: list[str]) -> str:
    """What ``command`` writes with stdout and stderr on a pseudo-terminal."""
    main, child = pty.openpty()
    process = subprocess.Popen(command, stdout=child, stderr=child, stdin=subprocess.DEVNULL)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal (EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(60) == 0
    return b"".join(chunks).decode(errors="replace")


class _Cluster:
    """Ray's resource calls, as a cluster with ``free`` of ``cpus`` CPUs answers them."""

    def __init__(self, free: float, cpus: float) -> None:
        self._free, self._cpus = free, cpus

    def available_resources(self) -> dict[str, float]:
        return {"CPU": self._free} if self._free else {}  # Ray leaves out what is used up

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self._cpus}


@pytest.mark.parametrize(
    ("free", "says"),
    [(0, "waiting for a free CPU (0 of 4 free in the cluster)"), (2, "2 of 4 CPUs free")],
)
def test_ray_batches_say_what_they_wait_for(free, says):
    note = _waiting_for(_Cluster(free, 4), {"a": 0, "b": 1}, deque([2, 3, 4]))
    assert note.startswith("2 task(s) submitted, 3 queued; ")
    assert says in note


def test_validation_reports_each_timed_round():
    data = MODELS / "digits_test.npz"
    _, seen = _collect(
        lambda: onnxprune.validate(MLP, data, baseline=MLP, min_runs=12, min_time=0.0)
    )
    rounds = [p for p in seen if p.stage == "validate"]
    assert [p.done for p in rounds] == list(range(1, len(rounds) + 1))
    assert len(rounds) >= 12  # at least min_runs rounds, one report each
    assert rounds[0].note.endswith("of at least 0 s timed")


def test_a_search_past_its_estimate_never_reports_more_done_than_in_all():
    """A step function of 19 random jumps: the search runs past its ``1 + bit_length`` estimate
    (22 analyses against 17 here); every report keeps done <= total, and the answer is still
    the largest count at most the target (a scan of every count)."""
    from onnxprune.pruners.targets import search_nested

    rng = np.random.default_rng(0)
    size, n = int(rng.integers(100, 1 << 16)), int(rng.integers(1, 30))
    jumps, heights = np.sort(rng.integers(0, size, n)), rng.random(n)
    heights = heights / heights.sum() * rng.uniform(0.3, 1.2)
    slope, target = rng.uniform(0, 1), float(rng.uniform(0.05, 0.95))

    def effective_at(k: int) -> float:
        return float(min(1.0, slope * k / size + heights[jumps <= k].sum()))

    seen = []
    with progress.listening(seen.append):
        found = search_nested(effective_at, 0, size - 2, target, size, 0.0)
    assert found.analyses == len(seen) > 1 + (size - 2).bit_length()
    assert all(p.done <= p.total for p in seen)
    counts = np.arange(size - 1)
    scan = slope * counts / size + np.cumsum(np.bincount(jumps, heights, size))[counts]
    assert found.removed == int(counts[np.minimum(scan, 1.0) <= target].max())
