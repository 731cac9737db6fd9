"""Stopping ``onnxprune sensitivity``: Ctrl-C gives one line and exit 130, no traceback, and
writes neither sensitivity.json nor index.html (they come only once every curve is measured)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import until
from tests.server.conftest import DATA, MODELS

LEVELS = ",".join(f"{i / 1000:g}" for i in range(1, 900))
"""899 levels for each of the CNN's layers: far from done when stopped."""


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_a_sensitivity_analysis_in_one_line_writing_nothing(tmp_path, jobs):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "onnxprune.cli",
                "sensitivity",
                str(MODELS / "cnn_digits.onnx"),
            ),
            *("--data", str(DATA), "--levels", LEVELS, "--out", str(out), "--jobs", str(jobs)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a Ctrl-C reaches it and its workers only
    )
    try:
        assert until(lambda: out.is_dir() or process.poll() is not None, 600)
        assert process.poll() is None, "the analysis ended before it could be stopped"
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1, stderr
    assert re.fullmatch(r"sensitivity stopped by SIGINT after \d+ layers: .*\n", stderr), stderr
    assert list(out.iterdir()) == []
