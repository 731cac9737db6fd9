"""Pieces every subcommand shares: exit codes, common flags, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from onnxprune.errors import InvalidOptionError

EXIT_BUG = 1
EXIT_GATE_FAILED = 3
"""``onnxprune validate`` ran and its gate (``GateResult.passed``) said no."""
EXIT_SOME_FAILED = 4
"""A batch of runs (``onnxprune sweep``) finished, and some of them failed."""


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (the main parser has the visible one)."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def add_input_shape(p: argparse.ArgumentParser) -> None:
    """The repeatable ``--input-shape NAME=D0,D1,...`` flag."""
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="fix the shape of a graph input with symbolic dimensions (repeatable)",
    )


def out(text: str) -> None:
    """Print a result on stdout."""
    print(text)  # noqa: T201 - the CLI is where printing belongs


def err(text: str) -> None:
    """Print one line on stderr."""
    print(text, file=sys.stderr)  # noqa: T201


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1,3,224,224`` strings into a name -> shape mapping.

    Raises:
        InvalidOptionError: a spec without ``=``, or with a dimension that is not a positive int.
    """
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise InvalidOptionError(
                f"--input-shape {spec!r} must look like NAME=1,3,224,224 (positive integers)"
            )
        shapes[name] = shape
    return shapes
