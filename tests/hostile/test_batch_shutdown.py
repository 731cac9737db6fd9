"""Stopping ``onnxprune batch``: SIGTERM and Ctrl-C give one line, exit 143 or 130, no worker left
running, and a state a rerun completes; after ``kill -9`` the workers die with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import until
from tests.server.conftest import MLP

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads processes from /proc")

MODELS = 6
FLAGS = ["--sparsity", "0.5", "--score", "synflow", "--rounds", "2000", "--jobs", "2"]
"""A few seconds a model (SynFlow), two at a time: a run is well under way when it is stopped."""


def _command(tmp_path: Path) -> list[str]:
    models = tmp_path / "models"
    if not models.exists():
        models.mkdir()
        for i in range(MODELS):
            (models / f"m{i}.onnx").write_bytes(MLP.read_bytes())
    return [
        sys.executable,
        "-m",
        "onnxprune.cli",
        "batch",
        str(models),
        "--out",
        str(tmp_path / "out"),
        *FLAGS,
    ]


def _lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "batch.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    return {
        int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _ppid(stat) == pid
    }


def _ppid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None  # gone meanwhile


def _started(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """A batch with its first model done and its workers busy on the next ones."""
    process = subprocess.Popen(
        _command(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a Ctrl-C reaches it and its workers only
    )
    assert until(lambda: _lines(tmp_path) or process.poll() is not None, 600)
    workers = _children(process.pid)
    assert process.poll() is None and workers, "the batch ended before it could be stopped"
    return process, workers


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_is_one_line_kills_the_workers_and_a_rerun_goes_on(tmp_path, signum, code):
    process, workers = _started(tmp_path)
    try:
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)  # as a terminal's Ctrl-C: the whole group
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == code, stderr
        assert stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"batch stopped by {signal.Signals(signum).name}: the "), stderr
        assert "run the same command again" in stderr
        assert until(lambda: not any(map(_alive, workers)), 60), "workers outlived the batch"
    finally:
        process.kill()
        _kill_all(workers)
    done = {line["model"] for line in _lines(tmp_path)}
    assert done
    for line in _lines(tmp_path):  # every line describes files that are there
        assert (tmp_path / "out" / line["output"]).is_file()
    rerun = subprocess.run(_command(tmp_path), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    final = _lines(tmp_path)
    assert len(final) == MODELS
    # Every model the stopped run reported is skipped; so may be one a worker finished as the
    # stop came (its stored result is whole; the report line was not written yet).
    skipped = {line["model"] for line in final if line["status"] == "skipped"}
    assert done <= skipped
    assert all(line["status"] in ("ok", "skipped") for line in final)
    assert all((tmp_path / "out" / line["output"]).is_file() for line in final)


def test_after_kill_9_the_workers_die_with_the_batch(tmp_path):
    process, workers = _started(tmp_path)
    try:
        process.kill()
        process.communicate(timeout=60)
        # A worker left behind would finish its model, then wait for work for good.
        assert until(lambda: not any(map(_alive, workers)), 120), "workers outlived the batch"
    finally:
        _kill_all(workers)
