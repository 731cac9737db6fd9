"""``onnxprune``: the parser of every subcommand, and ``main``, which maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from onnxprune import __version__, progress
from onnxprune.cli import (
    _analyze,
    _batch,
    _compact,
    _prune,
    _remote,
    _report,
    _run,
    _sensitivity,
    _serve,
    _sweep,
    _validate,
)
from onnxprune.cli._common import EXIT_BUG, err
from onnxprune.errors import OnnxpruneError
from onnxprune.text import printable

COMMANDS = (
    _analyze,
    _prune,
    _compact,
    _validate,
    _sweep,
    _sensitivity,
    _batch,
    _report,
    _run,
    _serve,
    _remote,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code.

    0 ok, 1 a bug, 2 bad input, 3 gate failed, 4 some runs failed, 5 no server reached; an
    ``OnnxpruneError`` gives its class's ``exit_code``. ``--debug`` prints the traceback of an
    error too and keeps its exit code.
    """
    args = _parser().parse_args(argv)
    try:
        # Progress bars on a terminal; sweep, sensitivity and batch draw their own (runs, layers,
        # models).
        with progress.bars(False if getattr(args, "own_bars", False) else None):
            return args.run(args)
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
    except OnnxpruneError as e:
        if args.debug:
            traceback.print_exc()
        err(f"{type(e).__name__}: {e}")
        return e.exit_code
    except Exception as e:  # a bug: short message, traceback only with --debug
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (rerun with --debug)"
        err(f"InternalError: {type(e).__name__}: {e}{hint}")
        return EXIT_BUG


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``onnxprune prune: error: ...``.

    argparse prints the whole usage before the error (6 to 12 lines); the usage is one
    ``--help`` away. Subcommand parsers are of this class too (``add_subparsers`` makes them
    with the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        """Print the error as one line on stderr and exit 2."""
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnxprune",
        description="Prune ONNX models and report direct and effective sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser
