"""The server's settings, and reading the files they come from (token, certificates).

Settings are named as the CLI's flags and the library's keywords elsewhere: ``max_bytes``,
``jobs``, ``memory_limit``. ``load_config`` still takes the old names (``max_model_bytes``,
``workers``, ``worker_memory``) with a ``DeprecationWarning``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

from onnxprune.errors import InvalidOptionError
from onnxprune.model import DEFAULT_MAX_BYTES
from onnxprune.service.wire import read_file, read_token
from onnxprune.sizes import physical_memory


@dataclass(frozen=True)
class Tls:
    """PEM bytes for TLS; with ``client_ca``, clients must present a certificate it signed."""

    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)


WORKER_MEMORY_SHARE = 0.75
"""The share of the machine's physical memory a server worker may use by default."""


def default_memory_limit() -> int:
    """Three quarters of the physical memory (0, no limit, where it is unknown).

    A worker that needs more fails alone with ``RESOURCE_EXHAUSTED``, before the machine swaps
    or its OOM killer picks a process (a fixed default, such as 32 GiB, could be above it).
    """
    memory = physical_memory()
    return 0 if memory is None else int(memory * WORKER_MEMORY_SHARE)


@dataclass(frozen=True)
class ServerConfig:
    """What ``create_server`` needs besides the address.

    Attributes:
        token: bearer token every call must carry (``authorization: Bearer <token>``); ``None``
            for no authentication. Never printed (``repr`` hides it).
        tls: certificate and key (and client CA for mutual TLS); ``None`` for plaintext.
        reflection: register the server reflection service.
        max_bytes: largest upload per model (its file plus external data) or data file,
            checked against the request header before any data is read.
        max_concurrent: most calls in flight; more get ``RESOURCE_EXHAUSTED``.
        jobs: most jobs running at once in worker processes; more wait for a free worker.
        memory_limit: address-space limit of each worker process in bytes; 0 for none
            (default: ``default_memory_limit()``, three quarters of the machine's memory).
        max_job_seconds: seconds a job may run in its worker; then it is killed and the call
            ends with ``DEADLINE_EXCEEDED`` (clients without a deadline cannot hold a worker).
        grace: seconds in-flight calls get to finish on shutdown.
        upload_timeout: seconds an upload may go without a message; then the call ends with
            ``DEADLINE_EXCEEDED``, freeing its slot and removing what was spooled.
        keepalive: seconds between the server's HTTP/2 pings on each connection; a peer that
            answers none within as many seconds is dropped with its calls. A raw client that
            opens a call and sends nothing more (no request, no ping answer) would otherwise
            hold a server thread for good.
        max_watches: most health ``Watch`` streams open at once (they need no token); more
            get ``RESOURCE_EXHAUSTED``.
        watch_seconds: how long a health ``Watch`` stream stays open at most.
        work_dir: where uploads and results are spooled (default: the system temp folder).
        metrics_port: serve Prometheus metrics at ``http://<host>:<port>/metrics`` (the
            server's host; 0 picks a free port); ``None`` (the default) serves none.
    """

    token: str | None = field(default=None, repr=False)
    tls: Tls | None = None
    reflection: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_concurrent: int = 16
    jobs: int = 2
    memory_limit: int = field(default_factory=default_memory_limit)
    max_job_seconds: float = 3600.0
    grace: float = 30.0
    upload_timeout: float = 60.0
    keepalive: float = 60.0
    max_watches: int = 8
    watch_seconds: float = 600.0
    work_dir: str | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_concurrent", "jobs", "max_watches"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name}={getattr(self, name)} must be at least 1")
        if self.memory_limit < 0 or self.grace < 0:
            raise InvalidOptionError("memory limit and grace period must not be negative")
        for name in ("max_job_seconds", "upload_timeout", "keepalive", "watch_seconds"):
            if not getattr(self, name) > 0:
                raise InvalidOptionError(f"{name}={getattr(self, name)} must be positive")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 2**16:
            raise InvalidOptionError(f"metrics_port={self.metrics_port} is not a port (0-65535)")
        if self.token is not None and not self.token:
            raise InvalidOptionError("the token must not be empty")


def load_config(
    *,
    token_file: str | os.PathLike | None = None,
    token: str | None = None,
    tls_cert: str | os.PathLike | None = None,
    tls_key: str | os.PathLike | None = None,
    tls_client_ca: str | os.PathLike | None = None,
    **settings: object,
) -> ServerConfig:
    """A ``ServerConfig`` whose token and TLS material are read from files.

    ``token`` is the token itself (a container's environment), instead of ``token_file``.
    ``settings`` are ``ServerConfig`` fields; the old names in ``RENAMED`` are taken too, with a
    ``DeprecationWarning``.

    Raises:
        InvalidOptionError: a missing or empty file, a certificate without its key (or the
            reverse), a client CA without a certificate, both a token and a token file, or a
            setting out of range.
    """
    if token is not None and token_file is not None:
        raise InvalidOptionError(
            "a token file and a token (ONNXPRUNE_TOKEN) were both given; give one"
        )
    if (tls_cert is None) != (tls_key is None):
        raise InvalidOptionError("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca is not None and tls_cert is None:
        raise InvalidOptionError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = None
    if tls_cert is not None:
        tls = Tls(
            read_file(tls_cert, "--tls-cert"),
            read_file(tls_key, "--tls-key"),
            None if tls_client_ca is None else read_file(tls_client_ca, "--tls-client-ca"),
        )
    if token_file is not None:
        token = read_token(token_file)
    elif token is not None:
        token = token.strip()
    return ServerConfig(token=token, tls=tls, **_renamed(settings))


RENAMED = {"max_model_bytes": "max_bytes", "workers": "jobs", "worker_memory": "memory_limit"}
"""Old setting -> its name now (as ``onnxprune serve``'s old flags)."""


def _renamed(settings: dict[str, object]) -> dict[str, object]:
    """``settings`` with old names replaced by new ones, warning about each."""
    current = {}
    for name, value in settings.items():
        new = RENAMED.get(name, name)
        if new != name:
            warnings.warn(f"{name} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
            if new in settings:
                raise InvalidOptionError(f"{name} and {new} are the same setting; give {new} only")
        current[new] = value
    return current
