"""The onnxprune gRPC service: a thin shell over ``analyze``, ``prune``, ``compact``, ``validate``.

Modules, in the order a request meets them:

- ``app``: ``create_server(address, config) -> (server, port)`` and ``serve`` (signals, grace);
- ``interceptors``: request log, bearer-token auth, the concurrency limit;
- ``health``: standard gRPC health checking, with ``liveness`` and ``readiness`` names;
- ``metrics``: Prometheus counters the interceptors and jobs fill (``--metrics-port``);
- ``logs``: the text and JSON log formats;
- ``servicer``: receives the upload (``uploads``), runs the job in a worker process (``jobs``,
  ``worker``), streams the results back;
- ``status``: library errors -> gRPC status codes (``to_status``).

Run it with ``onnxprune serve`` or ``python -m onnxprune.service``.
"""

from onnxprune.service.app import create_server, serve
from onnxprune.service.config import ServerConfig, load_config

__all__ = ["ServerConfig", "create_server", "load_config", "serve"]
