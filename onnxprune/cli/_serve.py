"""``onnxprune serve``: the gRPC service (package ``server``), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os

from onnxprune.cli._common import add_debug
from onnxprune.model import DEFAULT_MAX_BYTES

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
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    p.add_argument("--token-file", metavar="F", help="require `authorization: Bearer <token in F>`")
    p.add_argument("--tls-cert", metavar="PEM", help="TLS certificate chain (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    p.add_argument(
        "--tls-client-ca", metavar="PEM", help="mutual TLS: clients need a certificate it signed"
    )
    p.add_argument("--reflection", action="store_true", help="enable server reflection")
    p.add_argument(
        "--max-model-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"refuse larger uploads from their header, unread (default {DEFAULT_MAX_BYTES})",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=16,
        help="calls in flight; more get RESOURCE_EXHAUSTED (default 16)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="jobs running at once in worker processes (default: CPU count, at most 4)",
    )
    p.add_argument(
        "--worker-memory-mb",
        type=int,
        default=32768,
        help="address-space limit of each worker process in MiB, 0 for none (default 32768)",
    )
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds calls in flight get on shutdown"
    )
    p.add_argument("--work-dir", metavar="DIR", help="where uploads are spooled (default: temp)")
    add_debug(p)
    p.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from onnxprune.service import (  # grpc and the worker pool only for this command
        load_config,
        serve,
    )

    config = load_config(
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        reflection=args.reflection,
        max_model_bytes=args.max_model_bytes,
        max_concurrent=args.max_concurrent,
        workers=args.workers,
        worker_memory=args.worker_memory_mb * 2**20,
        grace=args.grace,
        work_dir=args.work_dir,
    )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = f"[{args.host}]" if ":" in args.host else args.host
    return serve(f"{host}:{args.port}", config)
