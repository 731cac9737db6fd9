"""``onnxprune remote analyze|prune|compact|validate|methods|health``: the commands, on a server.

Each remote command has exactly the flags of its local twin (the same ``add`` functions register
them) plus the connection flags, writes the same files and prints the same output; exit codes are
the local ones (2 bad input or a refused call, 3 gate failed, 1 a server failure) and 5 when no
server could be reached (``ConnectionFailedError``, with a hint: down, TLS on one side only,
wrong CA). Errors are the library's (``onnxprune.errors``), mapped by ``cli.main`` as local ones.
This module builds the parsers; the calls (``_remote_calls``, gRPC) are imported when one runs.
``remote prune --structured`` writes the compacted model; only ``--masked-out`` (the zeroed
model in the original shapes) is not offered remotely, and is refused.
"""

from __future__ import annotations

import argparse

from onnxprune.cli import _analyze, _compact, _prune, _validate
from onnxprune.cli._common import add_debug


def add(sub: argparse._SubParsersAction) -> None:
    """The ``remote`` subcommand and its own subcommands."""
    p = sub.add_parser(
        "remote",
        help="run analyze, prune, compact, validate or methods on an onnxprune server, or check "
        "its health "
        "(onnxprune serve)",
        description=(
            "The local commands with the same flags and outputs, run by a server: models and "
            "data are uploaded in chunks, results are written here. `remote prune --structured` "
            "and `remote compact` write the smaller model the server made."
        ),
    )
    remote = p.add_subparsers(dest="remote_command", required=True, metavar="COMMAND")
    for command in (_analyze, _prune, _compact, _validate):
        command.add(remote)
    health = remote.add_parser(
        "health",
        help="check the server's health (exit 0 when SERVING, 3 otherwise): for probes",
        description=(
            "Ask the server's standard gRPC health service for SERVICE's status and print it. "
            "Exit 0 when SERVING, 3 when not (NOT_SERVING, UNKNOWN, NOT_FOUND), 5 when no server "
            "answered: a container health check or an orchestrator's probe."
        ),
    )
    health.add_argument(
        "--service",
        default="",
        help="'' (the server, default), liveness, readiness or onnxprune.v1.PruningService",
    )
    add_debug(health)
    for parser in remote.choices.values():
        _add_connection(parser)
        parser.set_defaults(run=_run)


def _add_connection(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("server")
    group.add_argument(
        "--server", default="127.0.0.1:50051", metavar="HOST:PORT", help="default 127.0.0.1:50051"
    )
    group.add_argument("--token-file", metavar="F", help="send `authorization: Bearer <token>`")
    group.add_argument("--tls-ca", metavar="PEM", help="use TLS; the CA of the server certificate")
    group.add_argument("--tls-cert", metavar="PEM", help="mutual TLS: this client's certificate")
    group.add_argument("--tls-key", metavar="PEM", help="mutual TLS: this client's private key")
    group.add_argument("--timeout", type=float, metavar="SECONDS", help="deadline of the call")


def _run(args: argparse.Namespace) -> int:
    """Run the remote command (its errors, remote ones included, are ``cli.main``'s to map)."""
    from onnxprune.cli._remote_calls import run

    return run(args)
