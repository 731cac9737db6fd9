"""Building the gRPC server (``create_server``) and running it until a signal (``serve``).

``create_server`` is apart from ``serve`` so tests bind ``127.0.0.1:0`` and drive the server in
process. ``serve`` stops on SIGTERM or SIGINT: health turns NOT_SERVING, new calls are refused,
calls in flight get ``config.grace`` seconds to finish, then the rest are cancelled (their worker
processes killed).
"""

from __future__ import annotations

import logging
import signal
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onnxprune.errors import InvalidOptionError
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.config import ServerConfig
from onnxprune.service.health import BoundedHealth
from onnxprune.service.interceptors import (
    BearerAuth,
    ConcurrencyLimit,
    OneRequestPool,
    RefuseMalformed,
    RequestLog,
)
from onnxprune.service.jobs import JobRunner
from onnxprune.service.metrics import ServiceMetrics, expose
from onnxprune.service.servicer import PruningServicer
from onnxprune.service.wire import MAX_CHUNK, SERVICE

log = logging.getLogger("server")

SPARE_THREADS = 8
"""Threads beyond ``max_concurrent`` (the pool of the pruning calls) and ``max_watches`` (the
pool of calls with one request, ``OneRequestPool``): refusing a call, a health check and
reflection need one."""


@dataclass(frozen=True)
class _Built:
    server: grpc.Server
    port: int
    health: BoundedHealth
    close: weakref.finalize  # kills the idle workers (stops the metrics); also on collection
    metrics_port: int | None


def create_server(address: str, config: ServerConfig) -> tuple[grpc.Server, int]:
    """A server for ``address`` (``host:port``; port 0 picks a free one), not yet started.

    Jobs run in processes of a ``multiprocessing`` fork server, which imports the caller's main
    module: a script that calls this must do so under ``if __name__ == "__main__":``.

    Returns:
        The server and the port it is bound to.

    Raises:
        InvalidOptionError: the address cannot be bound.
    """
    built = _build(address, config)
    return built.server, built.port


def serve(address: str, config: ServerConfig) -> int:
    """Serve on ``address`` until SIGTERM or SIGINT, then shut down gracefully; returns 0."""
    built = _build(address, config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    built.server.start()
    host = address.rpartition(":")[0]
    log.info(
        "listening on %s:%d (tls: %s, token: %s, reflection: %s, jobs: %d)",
        host,
        built.port,
        "mutual" if config.tls and config.tls.client_ca else "yes" if config.tls else "no",
        "required" if config.token else "none",
        "on" if config.reflection else "off",
        config.jobs,
    )
    if built.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", host, built.metrics_port)
    while not stop.wait(timeout=1.0):
        pass
    log.info("shutting down: finishing calls in flight (grace %.0f s)", config.grace)
    built.health.enter_graceful_shutdown()
    built.server.stop(config.grace).wait()
    built.close()
    log.info("stopped")
    return 0


def _build(address: str, config: ServerConfig) -> _Built:
    metrics = ServiceMetrics()
    runner = JobRunner(config.jobs, config.memory_limit, config.max_job_seconds, metrics)
    health_servicer = BoundedHealth(config.max_watches, config.watch_seconds)
    one_request = ThreadPoolExecutor(config.max_watches + SPARE_THREADS, "onnxprune-one-request")
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.max_concurrent + SPARE_THREADS),
        interceptors=[
            OneRequestPool(one_request),
            RequestLog(metrics),
            BearerAuth(config.token),
            RefuseMalformed(),
            ConcurrencyLimit(config.max_concurrent, metrics, health_servicer.ready),
        ],
        options=[
            ("grpc.max_receive_message_length", 2 * MAX_CHUNK),
            ("grpc.so_reuseport", 0),
            *_keepalive(config.keepalive),
        ],
    )
    pb_grpc.add_PruningServiceServicer_to_server(PruningServicer(config, runner), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        names = (SERVICE, "grpc.health.v1.Health", reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    try:
        if config.tls is None:
            port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(config.tls.key, config.tls.cert)],
                root_certificates=config.tls.client_ca,
                require_client_auth=config.tls.client_ca is not None,
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError as e:  # grpc raises when it cannot bind
        raise InvalidOptionError(f"cannot listen on {address}: {e}") from e
    if port == 0:
        raise InvalidOptionError(f"cannot listen on {address}")
    stops = [runner.close]
    metrics_port = None
    if config.metrics_port is not None:
        http, metrics_port = expose(metrics, address.rpartition(":")[0], config.metrics_port)
        stops.append(http.shutdown)
    close = weakref.finalize(server, _run_all, stops)
    return _Built(server, port, health_servicer, close, metrics_port)


def _keepalive(seconds: float) -> list[tuple[str, int]]:
    """The server options that ping every connection, with calls or none, each ``seconds``.

    A connection whose ping goes unanswered for ``seconds`` is dropped: its calls are cancelled
    and the threads waiting on them freed.
    """
    ms = max(1, round(seconds * 1000))
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        ("grpc.http2.ping_timeout_ms", ms),  # the limit gRPC enforces on the ping's answer
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def _run_all(stops: list) -> None:
    for stop in stops:
        stop()
