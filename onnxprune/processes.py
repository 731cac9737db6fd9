"""Independent tasks in worker processes: results in task order, a crashing task isolated.

A task's function is expected to turn its own errors into a result value (a sweep run or a batch
item with ``error`` set). What it cannot catch is its process dying: a signal, the kernel's
out-of-memory killer, a crash in native code. ``ProcessPoolExecutor`` then fails every task in
flight with ``BrokenProcessPool`` without saying which one killed it, so those tasks are rerun
one at a time in a pool of one worker: the one that dies alone is recorded as crashed, the others
complete, and the remaining tasks go on in a fresh pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
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
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(queue)))) as pool:
        while queue or inflight:
            while queue and len(inflight) < jobs:
                index = queue.popleft()
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
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            result = pool.submit(fn, task).result()
        except BrokenProcessPool:
            result = crashed(task, CRASHED)
    done(index, result)
