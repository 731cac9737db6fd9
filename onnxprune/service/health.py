"""Standard gRPC health checking (``grpc.health.v1.Health``), registered in one place.

Health calls need no token (load balancers and probes have none), so their cost is bounded
here: a ``Watch`` stream holds one of the server's threads for as long as it is open, so at most
``max_watches`` are open at once (more get ``RESOURCE_EXHAUSTED``; ``Check`` always works) and
each ends after ``lifetime`` seconds with ``DEADLINE_EXCEEDED`` (a watcher then watches again).
The server's pool of calls with one request (``interceptors.OneRequestPool``) has
``max_watches`` threads more than its other calls need, so watches never take a thread from
them, nor from the pruning calls, which have a pool of their own.

Besides the server (``""``) and the pruning service, two names serve orchestrators' probes:
``liveness`` is SERVING while the server runs (a probe that fails means: restart it), and
``readiness`` is SERVING while it takes new calls, NOT_SERVING while all ``--max-concurrent``
slots are taken (a new call would get RESOURCE_EXHAUSTED: send it elsewhere). Shutdown turns
every name NOT_SERVING.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health, health_pb2

from onnxprune.service.wire import SERVICE

LIVENESS = "liveness"
READINESS = "readiness"


class BoundedHealth(health.HealthServicer):
    """The standard health servicer with a limit on open ``Watch`` streams and their lifetime.

    Args:
        max_watches: most ``Watch`` streams open at once.
        lifetime: seconds a ``Watch`` stream stays open at most.
    """

    def __init__(self, max_watches: int, lifetime: float) -> None:
        super().__init__(experimental_non_blocking=False)
        self._max_watches = max_watches
        self._lifetime = lifetime
        self._watches = threading.BoundedSemaphore(max_watches)
        for name in ("", SERVICE, LIVENESS, READINESS):
            self.set(name, health_pb2.HealthCheckResponse.SERVING)

    def ready(self, ready: bool) -> None:
        """Set the ``readiness`` status (ignored once shutdown has begun)."""
        serving = health_pb2.HealthCheckResponse
        self.set(READINESS, serving.SERVING if ready else serving.NOT_SERVING)

    def Watch(  # noqa: N802 - the name comes from the proto
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        """The service's status now and at each change, until the call ends or its lifetime."""
        if not self._watches.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._max_watches} health watches are open (this server's limit); "
                "use Check, or watch again later",
            )
        try:
            updates: queue.SimpleQueue = queue.SimpleQueue()
            # The base class sends the status now and at each change through the callback, and
            # None once the call has ended (the client left, the server stopped).
            super().Watch(request, context, updates.put)
            end = time.monotonic() + self._lifetime
            while True:
                try:
                    response = updates.get(timeout=max(0.0, end - time.monotonic()))
                except queue.Empty:
                    context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"a health watch ends after {self._lifetime:g} s; watch again",
                    )
                if response is None:
                    return
                yield response
        finally:
            self._watches.release()
