"""``onnxprune serve``: the gRPC service (``onnxprune.service``), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from onnxprune.cli._aliases import add_renamed
from onnxprune.cli._common import add_debug, add_max_bytes

if TYPE_CHECKING:
    from onnxprune.service import ServerConfig

DEFAULT_PORT = 50051


def add(sub: argparse._SubParsersAction) -> None:
    """The ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve analyze, prune and validate over gRPC (onnxprune.v1.PruningService)",
        description=(
            "Serve onnxprune.v1.PruningService (proto/onnxprune/v1/pruning.proto) with standard "
            "health checking. Jobs run in worker processes with a memory limit. Stops on SIGTERM "
            "or SIGINT after the calls in flight finish (within --grace seconds). Logs each call "
            "(method, bytes, duration, status) on stderr."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=os.environ.get("ONNXPRUNE_PORT", str(DEFAULT_PORT)),  # parsed as the flag is
        help=f"port (env ONNXPRUNE_PORT; default {DEFAULT_PORT}; 0: any)",
    )
    env = os.environ.get
    p.add_argument(
        "--token-file",
        metavar="F",
        default=env("ONNXPRUNE_TOKEN_FILE"),
        help="require `authorization: Bearer <token in F>` (env ONNXPRUNE_TOKEN_FILE; or the "
        "token itself in ONNXPRUNE_TOKEN)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=env("ONNXPRUNE_TLS_CERT"),
        help="TLS certificate chain, with --tls-key (env ONNXPRUNE_TLS_CERT)",
    )
    p.add_argument(
        "--tls-key",
        metavar="PEM",
        default=env("ONNXPRUNE_TLS_KEY"),
        help="TLS private key (env ONNXPRUNE_TLS_KEY)",
    )
    p.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        default=env("ONNXPRUNE_TLS_CLIENT_CA"),
        help="mutual TLS: clients need a certificate it signed (env ONNXPRUNE_TLS_CLIENT_CA)",
    )
    p.add_argument("--reflection", action="store_true", help="enable server reflection")
    add_max_bytes(p)
    add_renamed(p, "--max-model-bytes", type=int)
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=16,
        help="calls in flight; more get RESOURCE_EXHAUSTED (default 16)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="jobs running at once in worker processes (default: CPU count, at most 4)",
    )
    add_renamed(p, "--workers", type=int)
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="address-space limit of each worker process, e.g. 8G; 0 for none (default: 3/4 of "
        "the machine's memory)",
    )
    add_renamed(p, "--worker-memory-mb", type=int, convert=_mebibytes)
    p.add_argument(
        "--max-job-seconds",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="stop a job that runs longer (DEADLINE_EXCEEDED; default 3600)",
    )
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds calls in flight get on shutdown"
    )
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="end an upload that sends nothing for this long (DEADLINE_EXCEEDED; default 60)",
    )
    p.add_argument(
        "--keepalive",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="ping each connection this often; drop one that answers no ping for as long "
        "(default 60)",
    )
    p.add_argument("--work-dir", metavar="DIR", help="where uploads are spooled (default: temp)")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus metrics at http://HOST:N/metrics (default: none)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="stderr log lines as text (default) or one JSON object each",
    )
    add_debug(p)
    p.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from onnxprune.service import serve  # grpc and the worker pool only for this command
    from onnxprune.service.logs import configure_logging

    config = server_config(args)
    configure_logging(args.log_format)
    host = f"[{args.host}]" if ":" in args.host else args.host
    return serve(f"{host}:{args.port}", config)


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ``ServerConfig`` that ``serve``'s flags ask for (files read, sizes parsed)."""
    from onnxprune.service import load_config
    from onnxprune.sizes import parse_size

    settings = {}
    if args.memory_limit is not None:  # else the config's default, a share of the memory
        settings["memory_limit"] = parse_size(args.memory_limit) or 0
    return load_config(
        token_file=args.token_file,
        token=os.environ.get("ONNXPRUNE_TOKEN"),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        reflection=args.reflection,
        max_bytes=args.max_bytes,
        max_concurrent=args.max_concurrent,
        jobs=args.jobs,
        max_job_seconds=args.max_job_seconds,
        grace=args.grace,
        upload_timeout=args.upload_timeout,
        keepalive=args.keepalive,
        work_dir=args.work_dir,
        metrics_port=args.metrics_port,
        **settings,
    )


def _mebibytes(count: int) -> int:
    """``--worker-memory-mb``'s MiB as the bytes ``--memory-limit`` holds."""
    return count * 2**20
