"""Command line: ``onnxprune analyze``, ``prune``, ``compact``, ``validate`` and the rest.

Parses arguments, calls the library and maps errors to exit codes; it holds no logic of its own.
Exit codes: 0 ok, 1 a bug, 2 bad input (``errors.EXIT_CODES``), 3 the validation gate failed
(the gate is a value, not an error), 4 some runs of a sweep failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from onnxprune import __version__
from onnxprune.cli import (
    _analyze,
    _batch,
    _compact,
    _prune,
    _remote,
    _report,
    _serve,
    _sweep,
    _validate,
)
from onnxprune.cli._common import (
    EXIT_BUG,
    EXIT_GATE_FAILED,
    EXIT_SOME_FAILED,
    err,
    parse_input_shapes,
)
from onnxprune.errors import EXIT_CODES, OnnxpruneError

__all__ = ["EXIT_BUG", "EXIT_GATE_FAILED", "EXIT_SOME_FAILED", "main", "parse_input_shapes"]

COMMANDS = (_analyze, _prune, _compact, _validate, _sweep, _batch, _report, _serve, _remote)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 bug, 2 bad input, 3 gate, 4 some failed)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
    except OnnxpruneError as e:
        if args.debug:
            raise
        err(f"{type(e).__name__}: {e}")
        return EXIT_CODES.get(type(e), 2)
    except Exception as e:  # a bug: short message, traceback only with --debug
        if args.debug:
            raise
        err(f"InternalError: {type(e).__name__}: {e} (rerun with --debug)")
        return EXIT_BUG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxprune",
        description="Prune ONNX models and report direct and effective sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser
