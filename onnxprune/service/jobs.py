"""Jobs in worker processes with a memory limit; a worker that is cancelled is killed.

Workers are forked from a ``multiprocessing`` fork server that imported the library once, so they
start in milliseconds without inheriting the gRPC server's threads, and each limits its own
address space (``RLIMIT_AS``) before its first job: a huge or hostile model makes that job fail
with ``MemoryError`` (or kills that one process), never the server. There are at most
``workers`` of them, started on demand and reused while they stay healthy (a warm process
allocates faster); one that was cancelled, failed for any reason but bad input, or ran
``JOBS_PER_WORKER`` jobs is killed and its slot refilled at the next job. The caller's
``alive()`` is polled; when it turns false (client cancelled, deadline passed, server stopping)
the worker is killed at once. So is a job that runs longer than the server's time limit
(``TimeLimitExceeded``): a client without a deadline cannot hold a worker for good.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import queue
import time
from collections.abc import Callable, Generator
from typing import Any

from onnxprune.errors import OnnxpruneError
from onnxprune.service import worker as _worker
from onnxprune.service.deadlines import TimeLimitExceeded
from onnxprune.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
JOBS_PER_WORKER = 100
"""A worker is replaced after this many jobs, so slow leaks in native code cannot pile up."""

Event = tuple  # ("progress", stage, fraction) or ("file", field, path, name)


class WorkerError(Exception):
    """A job failed in its worker for a reason that is not the caller's input (a bug, a crash)."""


class Cancelled(Exception):  # noqa: N818 - a state, not an error: the caller stopped waiting
    """The caller went away (cancelled, deadline, shutdown); the worker has been killed."""


class JobRunner:
    """Runs library jobs in worker processes, at most ``workers`` at a time.

    Args:
        workers: how many jobs may run at once; more wait for a free worker.
        memory_limit: address-space limit of each worker in bytes; 0 for none.
        time_limit: seconds a job may run in its worker (waiting for one not counted).
        metrics: counts jobs in flight and workers killed and replaced.
    """

    def __init__(
        self, workers: int, memory_limit: int, time_limit: float, metrics: ServiceMetrics
    ) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([_worker.__name__])
        multiprocessing.forkserver.ensure_running()  # start importing the library now
        self._memory_limit = memory_limit
        self._time_limit = time_limit
        self._metrics = metrics
        self._slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers):
            self._slots.put(None)  # a slot without a process yet

    def run(
        self, job: str, args: dict[str, Any], alive: Callable[[], bool]
    ) -> Generator[Event, None, Any]:
        """Run ``_worker.JOBS[job]`` with ``args``; yields its events (progress, files ready).

        Returns:
            What the job returned.

        Raises:
            Cancelled: ``alive()`` turned false; the worker was killed.
            TimeLimitExceeded: the job ran longer than the time limit; the worker was killed.
            OnnxpruneError: the library refused the input (raised again here).
            MemoryError: the job went over the memory limit.
            WorkerError: a bug in the job, or the worker died.
        """
        worker = self._take(alive)
        healthy = False
        self._metrics.jobs_in_flight.inc()
        try:
            worker = worker or _Worker(self._context, self._memory_limit)
            result = yield from worker.run(job, args, alive, self._time_limit)
        except OnnxpruneError:  # bad input: the worker itself is fine
            healthy = True
            raise
        else:
            healthy = True
            return result
        finally:
            self._metrics.jobs_in_flight.dec()
            healthy = healthy and worker is not None and worker.reusable()
            if worker is not None and not healthy:
                worker.kill()
                self._metrics.worker_restarts.inc()
            self._slots.put(worker if healthy else None)

    def close(self) -> None:
        """Kill the idle workers (busy ones die with their calls)."""
        while not self._slots.empty():
            worker = self._slots.get_nowait()
            if worker is not None:
                worker.kill()

    def _take(self, alive: Callable[[], bool]) -> _Worker | None:
        while True:
            try:
                return self._slots.get(timeout=POLL_SECONDS)
            except queue.Empty:  # noqa: PERF203 - a wait for a free worker, not a hot loop
                if not alive():
                    raise Cancelled from None


class _Worker:
    """One worker process and the pipe jobs and their events travel through."""

    def __init__(self, context: Any, memory_limit: int) -> None:
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_worker.serve, args=(child, memory_limit), daemon=True
        )
        self._process.start()
        child.close()
        self._jobs = 0

    def run(
        self, job: str, args: dict[str, Any], alive: Callable[[], bool], time_limit: float
    ) -> Generator[Event, None, Any]:
        self._jobs += 1
        self._conn.send((job, args))
        end = time.monotonic() + time_limit
        while True:
            if self._conn.poll(POLL_SECONDS):
                message = self._receive()
                if message[0] in ("progress", "file"):
                    yield message
                else:
                    return _outcome(job, message)
            elif not self._process.is_alive() and not self._conn.poll(0):
                raise self._died()
            if not alive():
                raise Cancelled
            if time.monotonic() > end:
                raise TimeLimitExceeded(
                    f"the {job} job ran over this server's time limit of {time_limit:g} s "
                    "(its --max-job-seconds) and was stopped"
                )

    def reusable(self) -> bool:
        return self._process.is_alive() and self._jobs < JOBS_PER_WORKER

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except EOFError:  # the worker died without a word: killed, or crashed in native code
            self._process.join(timeout=5)
            raise self._died() from None

    def _died(self) -> WorkerError:
        return WorkerError(f"the worker process died (exit code {self._process.exitcode})")


def _outcome(job: str, message: tuple) -> Any:
    kind, payload = message[0], message[1]
    if kind == "ok":
        return payload
    if kind == "error":  # an OnnxpruneError or a MemoryError, rebuilt by pickle
        raise payload
    log.error("job %s failed in its worker:\n%s", job, message[2])
    raise WorkerError(f"internal error in the {job} job ({payload}); see the server log")
