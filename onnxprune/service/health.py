"""Standard gRPC health checking (``grpc.health.v1.Health``), registered in one place.

Health calls need no token (load balancers and probes have none), so their cost is bounded
here: a ``Watch`` stream holds one of the server's threads for as long as it is open, so at most
``max_watches`` are open at once (more get ``RESOURCE_EXHAUSTED``; ``Check`` always works) and
each ends after ``lifetime`` seconds with ``DEADLINE_EXCEEDED`` (a watcher then watches again).
The server's thread pool has ``max_watches`` threads more than its other calls need, so watches
never take a thread from them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from onnxprune.service.wire import SERVICE


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


def add_health(server: grpc.Server, max_watches: int, lifetime: float) -> health.HealthServicer:
    """Register the health service with the server (``""``) and the pruning service SERVING.

    Args:
        server: the server.
        max_watches: most ``Watch`` streams open at once.
        lifetime: seconds a ``Watch`` stream stays open at most.

    Returns:
        The servicer; ``enter_graceful_shutdown()`` turns every status NOT_SERVING.
    """
    servicer = BoundedHealth(max_watches, lifetime)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", SERVICE):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer
