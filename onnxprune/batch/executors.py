"""Where a batch's jobs run: local worker processes, or tasks on a Ray cluster.

Both ship the same function, ``job.run_job``, and give results in job order. Ray is the optional
``ray`` extra; it is imported only when ``executor="ray"`` is asked for. The job module (ONNX,
ONNX Runtime) and the process pool are imported when jobs run: the command line reads
``EXECUTORS`` for its ``--help``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from onnxprune import progress
from onnxprune.errors import InvalidOptionError

if TYPE_CHECKING:
    from onnxprune.batch.job import ItemResult, Job

    OnDone = Callable[[ItemResult], None] | None

EXECUTORS = ("local", "ray")


def run_jobs(
    jobs: Sequence[Job],
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: OnDone = None,
) -> list[ItemResult]:
    """Run every job and return their results in order.

    Args:
        jobs: the jobs.
        executor: ``"local"`` (worker processes on this machine) or ``"ray"``.
        workers: jobs in flight at once (local default 1; Ray default: as the cluster allows).
        address: the Ray cluster to join (``"auto"``, ``"ray://host:10001"``); ``None`` starts
            a local Ray instance unless this process has already initialized Ray.
        on_done: called with each result as it arrives.

    Raises:
        InvalidOptionError: an unknown executor, ``workers`` below 1, an address without Ray,
            Ray not installed or its cluster not reachable.
    """
    check_executor(executor, workers, address)
    if not jobs:
        return []
    from onnxprune.batch.job import crashed, run_job
    from onnxprune.processes import run_in_processes

    if executor == "local":
        return run_in_processes(run_job, jobs, jobs=workers or 1, crashed=crashed, on_done=on_done)
    return _run_ray(jobs, workers, address, on_done)


def check_executor(executor: str, workers: int | None, address: str | None) -> None:
    """Refuse an unknown executor, ``workers`` below 1, and an address only Ray would use.

    Raises:
        InvalidOptionError: one line naming the flag.
    """
    if executor not in EXECUTORS:
        raise InvalidOptionError(f"executor {executor!r} must be one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InvalidOptionError(f"jobs={workers} must be at least 1")
    if address is not None and executor != "ray":
        raise InvalidOptionError("--address is the Ray cluster to join; it needs --executor ray")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidOptionError(
            "--executor ray needs the 'ray' extra: pip install 'onnxprune[ray]'"
        ) from None
    return ray


def _run_ray(
    jobs: Sequence[Job], workers: int | None, address: str | None, on_done: OnDone
) -> list[ItemResult]:
    """One Ray task per job (one CPU each, no retries), at most ``workers`` in flight."""
    from onnxprune.batch.job import crashed, run_job

    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        where = "a new local cluster" if address is None else f"the cluster at {address}"
        progress.report("ray", 0, len(jobs), f"starting Ray: joining {where}")
        local = {"include_dashboard": False} if address is None else {}
        try:
            ray.init(address=address, logging_level="warning", **local)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InvalidOptionError(f"cannot start or join Ray at {address!r}: {e}") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_job)
        results: dict[int, ItemResult] = {}
        queue, pending = deque(range(len(jobs))), {}
        while queue or pending:
            while queue and (workers is None or len(pending) < workers):
                index = queue.popleft()
                pending[task.remote(jobs[index])] = index
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_NOTE_SECONDS)
            if not ready:
                progress.report("ray", len(results), len(jobs), _waiting_for(ray, pending, queue))
            for ref in ready:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died, or the task could not run
                    result = crashed(jobs[index], f"its Ray task failed: {type(e).__name__}")
                results[index] = result
                if on_done is not None:
                    on_done(result)
        return [results[i] for i in range(len(jobs))]
    finally:
        if started:
            ray.shutdown()


WAIT_NOTE_SECONDS = 5.0
"""How long Ray may keep every task pending before the progress note says what it waits for."""


def _waiting_for(ray: Any, pending: dict, queue: deque) -> str:
    """What a batch on Ray waits for: its tasks, and the cluster's free CPUs."""
    free = ray.available_resources().get("CPU", 0)
    cpus = ray.cluster_resources().get("CPU", 0)
    tasks = f"{len(pending)} task(s) submitted, {len(queue)} queued"
    if free < 1:
        return f"{tasks}; waiting for a free CPU ({free:g} of {cpus:g} free in the cluster)"
    return f"{tasks}; waiting for the running tasks ({free:g} of {cpus:g} CPUs free)"
