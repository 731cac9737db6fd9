"""Worker processes: a task that kills its worker is found and recorded; the others complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

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


HELD = """
import os, signal, time
from onnxprune.processes import signals_held
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
with signals_held():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    inside = list(got)
print(inside, got)
"""


def test_a_stop_signal_waits_while_held_and_arrives_after():
    # In a fresh interpreter: masks are per thread, and only its main thread runs handlers.
    done = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[0] == f"[] [{int(signal.SIGTERM)}]"


def _blocked_stop_signals(_: int) -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & {signal.SIGINT, signal.SIGTERM}


def test_workers_forked_while_signals_are_held_take_them_again():
    assert run_in_processes(_blocked_stop_signals, [0, 1], jobs=2, crashed=lambda t, r: None) == [
        set(),
        set(),
    ]
