"""One batch per output folder: a second run is refused at once (exit 2); kill -9 frees the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from onnxprune import InvalidOptionError
from onnxprune.batch import PruneOptions, lock_folder, run_batch
from tests.batch.models import mlp, save
from tests.helpers import run_cli

HOLD = (
    "import sys\n"
    "from onnxprune.batch import lock_folder\n"
    "with lock_folder(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)
"""Holds the lock of ``argv[1]`` until its stdin closes (or it is killed)."""


def _busy(out, pid):
    return (
        f"InvalidOptionError: {out} is in use by another onnxprune batch (pid {pid}); wait for it "
        "to finish or choose another output folder"
    )


def test_a_second_run_exits_2_at_once_while_the_first_completes(tmp_path):
    save(mlp(1), tmp_path / "zoo" / "a.onnx")
    save(mlp(2), tmp_path / "zoo" / "b.onnx")
    out = tmp_path / "out"
    second = []

    def on_done(result):
        # The first run is between two models, holding the folder: a second run starts now.
        if not second:
            second.append(
                run_cli("batch", str(tmp_path / "zoo"), "--out", str(out), "--sparsity", "0.9")
            )

    first = run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.5), on_done=on_done)
    (refused,) = second
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [_busy(out, os.getpid())]
    assert refused.stdout == ""
    # The first run went on undisturbed: both models at its own target, its files agree.
    assert [(r.model, r.status, r.target) for r in first.results] == [
        ("a.onnx", "ok", 0.5),
        ("b.onnx", "ok", 0.5),
    ]
    lines = [json.loads(x) for x in (out / "batch.jsonl").read_text().splitlines()]
    assert lines == [r.to_dict() for r in first.results]
    # Released: the next run gets the folder (and finds both models done).
    again = run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.5))
    assert [r.status for r in again.results] == ["skipped", "skipped"]


def test_the_cli_names_the_folder_and_the_pid_holding_it(tmp_path):
    save(mlp(1), tmp_path / "zoo" / "a.onnx")
    out = tmp_path / "out"
    out.mkdir()
    args = ("batch", str(tmp_path / "zoo"), "--out", str(out), "--sparsity", "0.5")
    with lock_folder(out):
        refused = run_cli(*args)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [_busy(out, os.getpid())]
    assert sorted(p.name for p in out.iterdir()) == [".onnxprune-batch.lock"]  # nothing written
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert (out / "a.onnx").exists()


def test_kill_9_frees_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with (
            pytest.raises(InvalidOptionError, match=rf"\(pid {holder.pid}\)"),
            lock_folder(tmp_path),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with lock_folder(tmp_path) as path:  # no stale lock: the kernel released it with the process
        assert path.read_text() == f"{os.getpid()}\n"
