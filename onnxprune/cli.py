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
from pathlib import Path

from onnxprune import __version__
from onnxprune.errors import EXIT_CODES, InvalidOptionError, OnnxpruneError
from onnxprune.model import DEFAULT_MAX_BYTES, save_model, write_text_atomic
from onnxprune.pruners.masks import load_npz, save_masks
from onnxprune.pruners.prune import prune
from onnxprune.pruners.registry import ALIASES, ALLOCATIONS, SCORES
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
    _add_prune(sub)
    methods_p = sub.add_parser("methods", help="list the scores and allocations with one line each")
    methods_p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    methods_p.set_defaults(run=_methods)
    return parser


def _add_prune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="prune a model to a target sparsity and write it with its masks",
        description=(
            "Prune the prunable weights (Conv, ConvTranspose, Gemm, MatMul kernels) of a model: "
            "score them, allocate a sparsity to each layer, write the pruned model, its masks "
            "(.npz, bool, keyed by weight name) and print the sparsity table of the result."
        ),
    )
    p.add_argument("model", help="path of the .onnx model (never overwritten)")
    p.add_argument("-o", "--output", required=True, help="path of the pruned .onnx model")
    p.add_argument(
        "--sparsity",
        type=float,
        help="target direct sparsity in [0, 1) (effective sparsity with --effective)",
    )
    p.add_argument("--score", default="magnitude", help="score (see `onnxprune methods`)")
    p.add_argument(
        "--allocation", default="global", help="layerwise allocation (see `onnxprune methods`)"
    )
    p.add_argument(
        "--effective",
        action="store_true",
        help="--sparsity is the target effective sparsity, reached by bisection",
    )
    p.add_argument(
        "--min-threshold",
        type=float,
        metavar="SIGMA",
        help="every layer keeps at least SIGMA (a fraction of all prunable weights) of its "
        "largest-scored weights (Gupta et al.); prevents layer collapse",
    )
    p.add_argument("--nm", metavar="N:M", help="N:M sparsity along the input dimension, e.g. 2:4")
    p.add_argument(
        "--skip-indivisible",
        action="store_true",
        help="with --nm, leave layers whose input size is not a multiple of M dense",
    )
    p.add_argument("--scores", metavar="NPZ", help="external scores keyed by weight name")
    p.add_argument("--masks-in", metavar="NPZ", help="masks to apply and compose with")
    p.add_argument(
        "--masks-out", metavar="NPZ", help="where to write masks (default <output stem>.masks.npz)"
    )
    p.add_argument("--report-out", metavar="JSON", help="also write the report as JSON")
    p.add_argument("--layers", metavar="REGEX", help="prune only weights whose name matches")
    p.add_argument("--exclude", metavar="REGEX", help="do not prune weights whose name matches")
    p.add_argument("--seed", type=int, default=0, help="seed of random scores (default 0)")
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="inputs for the activation score (arrays by input name)",
    )
    p.add_argument("--rounds", type=int, default=100, help="SynFlow rounds (default 100)")
    p.add_argument("--exact", action="store_true", help="report (and target) the exact level")
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="fix the shape of a graph input with symbolic dimensions (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help=argparse.SUPPRESS)
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.set_defaults(run=_prune)


def _prune(args: argparse.Namespace) -> int:
    source, output = Path(args.model), Path(args.output)
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise InvalidOptionError("the output would overwrite the input model; choose another -o")
    masks_out = Path(args.masks_out) if args.masks_out else output.with_suffix(".masks.npz")
    calibration = load_npz(args.calibration, "calibration") if args.calibration else None
    result = prune(
        source,
        sparsity=args.sparsity,
        score=args.score,
        allocation=args.allocation,
        effective=args.effective,
        min_threshold=args.min_threshold,
        nm=args.nm,
        scores=args.scores,
        masks=args.masks_in,
        layers=args.layers,
        exclude=args.exclude,
        seed=args.seed,
        calibration=calibration,
        rounds=args.rounds,
        input_shapes=parse_input_shapes(args.input_shape),
        level="exact" if args.exact else "channel",
        skip_indivisible=args.skip_indivisible,
        max_bytes=args.max_bytes,
    )
    save_model(result.model, output)
    save_masks(result.masks, masks_out)
    if args.report_out:
        write_text_atomic(Path(args.report_out), json.dumps(result.report.to_dict(), indent=2))
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)  # noqa: T201
    if args.json:
        print(json.dumps(result.report.to_dict(), indent=2))  # noqa: T201
        return 0
    print(format_table(result.report))  # noqa: T201
    if result.analyses:
        print(f"effective target reached in {result.analyses} analyses")  # noqa: T201
    print(f"wrote {output} and {masks_out}")  # noqa: T201
    return 0


def _methods(args: argparse.Namespace) -> int:
    for title, table in (("scores", SCORES), ("allocations", ALLOCATIONS)):
        print(f"{title}:")  # noqa: T201
        for name in sorted(table):
            spelled = next((k for k, v in ALIASES.items() if v == name and "+" in k), name)
            print(f"  {spelled:<12} {table[name].summary}")  # noqa: T201
    return 0


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
