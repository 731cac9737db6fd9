"""Prometheus metrics of the service, served on an opt-in port (``onnxprune serve --metrics-port``).

Every server keeps its own registry (tests run several servers in one process), filled by the
request log (calls by method and status, latency, bytes each way), the concurrency limit (calls in
flight) and the job runner (jobs in flight, workers restarted). Nothing is exposed unless
``ServerConfig.metrics_port`` is set; the exposition is plain HTTP on the server's host, for a
scraper inside the same network (it carries counts and timings, never models or tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from onnxprune.errors import InvalidOptionError

LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
"""Seconds: a health check takes milliseconds, a prune of a large model minutes."""


@dataclass
class ServiceMetrics:
    """The service's metrics, in a registry of their own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "onnxprune_requests",
            "Calls ended, by method and status code.",
            ["method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "onnxprune_request_duration_seconds",
            "Call duration, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes = Counter(
            "onnxprune_request_bytes",
            "Message bytes, by method and direction (received, sent).",
            ["method", "direction"],
            registry=r,
        )
        self.calls_in_flight = Gauge(
            "onnxprune_calls_in_flight", "Calls of the pruning service in flight.", registry=r
        )
        self.jobs_in_flight = Gauge(
            "onnxprune_jobs_in_flight", "Jobs running in worker processes.", registry=r
        )
        self.worker_restarts = Counter(
            "onnxprune_worker_restarts",
            "Worker processes killed and replaced (cancelled, crashed, over a limit, retired).",
            registry=r,
        )

    def call_ended(
        self, method: str, status: str, seconds: float, received: int, sent: int
    ) -> None:
        """Record one finished call."""
        self.requests.labels(method, status).inc()
        self.latency.labels(method).observe(seconds)
        self.bytes.labels(method, "received").inc(received)
        self.bytes.labels(method, "sent").inc(sent)


def expose(metrics: ServiceMetrics, host: str, port: int) -> tuple[object, int]:
    """Serve ``metrics`` at ``http://host:port/metrics`` in a daemon thread.

    Returns:
        The HTTP server (``shutdown()`` stops it) and the port it is bound to (``port`` 0 picks
        a free one).

    Raises:
        InvalidOptionError: the address cannot be bound.
    """
    try:
        server, _ = start_http_server(port, addr=host.strip("[]"), registry=metrics.registry)
    except OSError as e:
        raise InvalidOptionError(f"cannot serve metrics on {host}:{port}: {e}") from e
    return server, server.server_port
