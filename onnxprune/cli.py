"""Command line: ``onnxprune analyze`` and friends.

Parses arguments, calls the library and maps errors to exit codes (see ``errors.py``); it holds
no logic of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from onnxprune import __version__
from onnxprune.errors import EXIT_CODES, InvalidOptionError, OnnxpruneError
from onnxprune.model import DEFAULT_MAX_BYTES
from onnxprune.report import format_table
from onnxprune.sparsity import analyze

EXIT_BUG = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 bug, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
    except OnnxpruneError as e:
        if args.debug:
            raise
        print(f"{type(e).__name__}: {e}", file=sys.stderr)  # noqa: T201
        return EXIT_CODES.get(type(e), 2)
    except Exception as e:  # a bug: short message, traceback only with --debug
        if args.debug:
            raise
        print(f"InternalError: {type(e).__name__}: {e} (rerun with --debug)", file=sys.stderr)  # noqa: T201
        return EXIT_BUG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxprune",
        description="Prune ONNX models and report direct and effective sparsity.",
    )
    parser.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze_p = sub.add_parser(
        "analyze",
        help="report direct and effective sparsity per prunable layer",
        description=(
            "Report, per prunable weight (Conv, ConvTranspose, Gemm, MatMul), the direct "
            "sparsity (zero weights) and the effective sparsity (zero weights plus nonzero "
            "weights on no input-to-output path), and the dead input/output units."
        ),
    )
    analyze_p.add_argument("model", help="path of the .onnx model")
    analyze_p.add_argument("--json", action="store_true", help="print one JSON object")
    analyze_p.add_argument(
        "--exact",
        action="store_true",
        help="position-level reachability (every channel at every spatial position); needs "
        "static shapes. Default: channel level, fast, can only under-report effective sparsity",
    )
    analyze_p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="fix the shape of a graph input with symbolic dimensions (repeatable)",
    )
    analyze_p.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"refuse models larger than this many bytes (default {DEFAULT_MAX_BYTES})",
    )
    analyze_p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    analyze_p.set_defaults(run=_analyze)
    return parser


def _analyze(args: argparse.Namespace) -> int:
    report = analyze(
        args.model,
        level="exact" if args.exact else "channel",
        input_shapes=parse_input_shapes(args.input_shape),
        max_bytes=args.max_bytes,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))  # noqa: T201
    else:
        print(format_table(report))  # noqa: T201
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
