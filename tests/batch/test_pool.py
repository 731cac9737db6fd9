"""Worker processes: a task that kills its worker is found and recorded; the others complete."""

from __future__ import annotations

import os
import signal

from onnxprune.processes import CRASHED, run_in_processes


def square_or_die(n: int) -> int:
    """n squared; 3 kills its own process, as the kernel's out-of-memory killer would."""
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return n * n


def test_a_dying_worker_is_isolated_and_the_rest_go_on():
    done = []
    results = run_in_processes(
        square_or_die,
        list(range(8)),
        jobs=2,
        crashed=lambda n, reason: f"{n}: {reason}",
        on_done=done.append,
    )
    assert results == [0, 1, 4, f"3: {CRASHED}", 16, 25, 36, 49]
    assert sorted(map(str, done)) == sorted(map(str, results))
