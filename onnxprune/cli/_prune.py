"""``onnxprune prune`` and ``onnxprune methods``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.cli._common import (
    add_debug,
    add_max_bytes,
    add_prune_flags,
    err,
    out,
    prune_options,
)
from onnxprune.cli._results import print_compaction, print_structured


def add(sub: argparse._SubParsersAction) -> None:
    """The ``prune`` and ``methods`` subcommands."""
    p = sub.add_parser(
        "prune",
        help="prune a model to a target sparsity and write it with its masks",
        description=(
            "Prune the prunable weights (Conv, ConvTranspose, Gemm, MatMul kernels; LSTM/GRU/RNN W "
            "and R) of a model: "
            "score them, allocate a sparsity to each layer, write the pruned model, its masks "
            "(.npz, bool, keyed by weight name) and print the sparsity table of the result. "
            "With --structured, remove whole units instead and write the smaller model."
        ),
    )
    p.add_argument("model", help="path of the .onnx model (never overwritten)")
    p.add_argument("-o", "--output", required=True, help="path of the pruned .onnx model")
    add_prune_flags(p)
    p.add_argument("--scores", metavar="NPZ", help="external scores keyed by weight name")
    p.add_argument("--masks-in", metavar="NPZ", help="masks to apply and compose with")
    p.add_argument(
        "--masks-out", metavar="NPZ", help="where to write masks (default <output stem>.masks.npz)"
    )
    p.add_argument(
        "--masked-out",
        metavar="ONNX",
        help="with --structured: also write the same pruning as zeros in the original shapes "
        "(to fine-tune with masks kept, then `onnxprune compact`)",
    )
    p.add_argument("--report-out", metavar="JSON", help="also write the result as JSON")
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="inputs for --score activation or sparsegpt, or --reconstruct (arrays by input name)",
    )
    p.add_argument(
        "--sensitivity",
        metavar="JSON",
        help="per-layer curves of `onnxprune sensitivity`, for --allocation sensitivity",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_prune)
    methods = sub.add_parser("methods", help="list the scores and allocations with one line each")
    add_debug(methods)
    methods.set_defaults(run=_methods)


def _prune(args: argparse.Namespace) -> int:
    from onnxprune.report import format_table
    from onnxprune.verbs import prune

    options = prune_options(args)
    output = Path(args.output)
    masks_out = None
    if options.structured is None:
        masks_out = Path(args.masks_out) if args.masks_out else output.with_suffix(".masks.npz")
    result = prune(
        args.model,
        options,
        masks=args.masks_in,
        scores=args.scores,
        calibration=args.calibration,
        sensitivity=args.sensitivity,
        output=output,
        masks_out=masks_out,
        report_out=args.report_out,
        masked_out=args.masked_out,
        max_bytes=args.max_bytes,
    )
    if result.structured is not None:
        print_structured(result.structured.to_dict(), args)
        return 0
    for line in result.warnings:
        err(f"warning: {line}")
    if args.json:
        out(json.dumps(result.to_dict(), indent=2))
        return 0
    out(format_table(result.report))
    if result.analyses:
        from onnxprune.pruners.targets import reached

        word = "reached" if reached(result.warnings) else "not reached (see the warning)"
        out(f"effective target {word} in {result.analyses} analyses")
    if result.compaction is not None:
        print_compaction(result.compaction.to_dict())
    out(f"wrote {output} and {masks_out}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    from onnxprune.pruners.registry import ALIASES, ALLOCATIONS, CRITERIA, SCORES

    tables = (("scores", SCORES), ("allocations", ALLOCATIONS), ("--structured", CRITERIA))
    for title, table in tables:
        out(f"{title}:")
        for name in sorted(table):
            spelled = next((k for k, v in ALIASES.items() if v == name and "+" in k), name)
            out(f"  {spelled:<12} {table[name].summary}")
    return 0
