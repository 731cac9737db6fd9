"""Independent tasks in worker processes: results in task order, a crashing task isolated.

A task's function is expected to turn its own errors into a result value (a sweep run or a batch
item with ``error`` set). What it cannot catch is its process dying: a signal, the kernel's
out-of-memory killer, a crash in native code. ``ProcessPoolExecutor`` then fails every task in
flight with ``BrokenProcessPool`` without saying which one killed it, so those tasks are rerun
one at a time in a pool of one worker: the one that dies alone is recorded as crashed, the others
complete, and the remaining tasks go on in a fresh pool.

Workers never outlive the work: they ignore SIGINT (a Ctrl-C reaches the whole process group;
the parent decides), they die with their parent however it ends (``kill -9`` included: Linux's
``PR_SET_PDEATHSIG``, elsewhere a thread watching the parent's pid), and when the parent's wait
is interrupted (Ctrl-C, a stop signal, an error in a callback) the workers are killed before the
exception goes on, rather than awaited.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

CRASHED = "its worker process died (killed by a signal, out of memory, or a crash in native code)"
"""The reason given to ``crashed`` for a task whose worker died."""


def run_in_processes(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int,
    crashed: Callable[[T, str], R],
    on_done: Callable[[R], None] | None = None,
) -> list[R]:
    """``[fn(task) for task in tasks]``, in up to ``jobs`` worker processes.

    Args:
        fn: a picklable function (module level) of a picklable task.
        tasks: the tasks; results come back in this order.
        jobs: worker processes; at most this many tasks are in flight.
        crashed: the result of a task whose worker died, given the task and a reason.
        on_done: called with each result as it arrives (progress bars).
    """
    results: dict[int, R] = {}
    queue = deque(range(len(tasks)))

    def done(index: int, result: R) -> None:
        results[index] = result
        if on_done is not None:
            on_done(result)

    while queue:
        suspects = _run_pool(fn, tasks, queue, jobs, done)
        for index in suspects:  # alone, so a death can only be this task's
            _run_alone(fn, tasks[index], index, crashed, done)
    return [results[i] for i in range(len(tasks))]


def _run_pool(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    queue: deque[int],
    jobs: int,
    done: Callable[[int, R], None],
) -> list[int]:
    """Run from ``queue`` until it is empty or the pool breaks; the tasks in flight at a break."""
    inflight: dict[Future, int] = {}
    with _pool(max(1, min(jobs, len(queue)))) as pool:
        while queue or inflight:
            while queue and len(inflight) < jobs:
                index = queue.popleft()
                with signals_held():  # submit forks the workers
                    inflight[pool.submit(fn, tasks[index])] = index
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                done(inflight.pop(future), result)
            if broken:
                return sorted(inflight.values())
    return []


def _run_alone(
    fn: Callable[[T], R],
    task: T,
    index: int,
    crashed: Callable[[T, str], R],
    done: Callable[[int, R], None],
) -> None:
    with _pool(1) as pool:
        try:
            with signals_held():  # submit forks the worker
                future = pool.submit(fn, task)
            result = future.result()
        except BrokenProcessPool:
            result = crashed(task, CRASHED)
    done(index, result)


@contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process, and are killed if the body raises."""
    pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:  # Ctrl-C, a stop signal, a callback's error: no worker may go on
        for process in list((pool._processes or {}).values()):  # kill_workers() is Python 3.14+
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (a worker is forked inside it).

    A stop signal's handler (``cli._signals``) raises; raised inside the callbacks that run
    around ``fork`` (``logging`` releases its lock there), Python prints the exception and drops
    it, so the stop would be lost. Held, the signal arrives right after, at a safe point.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no masks, no fork
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal this process gets when its parent dies."""

WATCH_SECONDS = 1.0
"""Without ``PR_SET_PDEATHSIG``, how often a worker checks that its parent is alive."""


def _start_worker(parent: int) -> None:
    """Initializer of each worker: ignore SIGINT, take SIGTERM's default, die with ``parent``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler the parent's fork left behind
    if hasattr(signal, "pthread_sigmask"):  # forked while the parent held them (signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
