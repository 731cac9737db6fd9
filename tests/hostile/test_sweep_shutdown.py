"""Stopping ``onnxprune sweep``: Ctrl-C gives one line and exit 130, no traceback; the runs done
stay on disk, each with its model, masks and report, and a run cut short leaves no file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import until
from tests.server.conftest import DATA, MODELS

SPARSITIES = ",".join(f"{i / 1000:g}" for i in range(1, 900))
"""899 SynFlow runs on the CNN, a fraction of a second each: far from done when stopped."""


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_a_sweep_in_one_line_and_leaves_only_whole_runs(tmp_path, jobs):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "onnxprune.cli", "sweep", str(MODELS / "cnn_digits.onnx")),
            *("--data", str(DATA), "--methods", "synflow/global", "--sparsities", SPARSITIES),
            *("--out", str(out), "--jobs", str(jobs)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a Ctrl-C reaches it and its workers only
    )
    try:
        # A run writes its report before it is validated, so a run is surely done once more
        # reports exist than runs can be in flight.
        started = lambda: len(list(out.glob("*.report.json"))) > jobs  # noqa: E731
        assert until(lambda: started() or process.poll() is not None, 600)
        assert process.poll() is None, "the sweep ended before it could be stopped"
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    done = re.fullmatch(r"sweep stopped by SIGINT: the (\d+) of 899 runs done are in .*\n", stderr)
    assert done, stderr
    stems = {p.name.removesuffix(".onnx") for p in out.glob("*.onnx")}
    assert len(stems) == int(done[1]) >= 1
    expected = {f"{s}{suffix}" for s in stems for suffix in (".onnx", ".masks.npz", ".report.json")}
    assert {p.name for p in out.iterdir()} == expected  # no sweep.json, no temporaries
