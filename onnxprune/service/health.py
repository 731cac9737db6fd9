"""Standard gRPC health checking (``grpc.health.v1.Health``), registered in one place."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from onnxprune.service.wire import SERVICE


def add_health(server: grpc.Server) -> health.HealthServicer:
    """Register the health service with the server (``""``) and the pruning service SERVING.

    Returns:
        The servicer; ``enter_graceful_shutdown()`` turns every status NOT_SERVING.
    """
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", SERVICE):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer
