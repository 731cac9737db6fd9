"""``onnxprune prune`` and ``onnxprune methods``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.cli._common import (
    add_debug,
    add_max_bytes,
    add_prune_flags,
    check_outputs,
    err,
    out,
    parse_input_shapes,
)
from onnxprune.cli._compact import add_structured_flags, check_prune_flags, run_structured
from onnxprune.model import save_model, write_text_atomic
from onnxprune.pruners.masks import load_npz, save_masks
from onnxprune.pruners.prune import prune
from onnxprune.pruners.registry import ALIASES, ALLOCATIONS, CRITERIA, SCORES
from onnxprune.report import format_table


def add(sub: argparse._SubParsersAction) -> None:
    """The ``prune`` and ``methods`` subcommands."""
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
    add_prune_flags(p)
    add_structured_flags(p)
    p.add_argument("--scores", metavar="NPZ", help="external scores keyed by weight name")
    p.add_argument("--masks-in", metavar="NPZ", help="masks to apply and compose with")
    p.add_argument(
        "--masks-out", metavar="NPZ", help="where to write masks (default <output stem>.masks.npz)"
    )
    p.add_argument("--report-out", metavar="JSON", help="also write the report as JSON")
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="inputs for the activation score (arrays by input name)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_prune)
    methods = sub.add_parser("methods", help="list the scores and allocations with one line each")
    add_debug(methods)
    methods.set_defaults(run=_methods)


def _prune(args: argparse.Namespace) -> int:
    source, output = Path(args.model), Path(args.output)
    check_prune_flags(args)
    if args.structured:
        return run_structured(args)
    masks_out = Path(args.masks_out) if args.masks_out else output.with_suffix(".masks.npz")
    check_outputs(source, output, masks_out, args.report_out)
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
        err(f"warning: {line}")
    if args.json:
        out(json.dumps(result.report.to_dict(), indent=2))
        return 0
    out(format_table(result.report))
    if result.analyses:
        out(f"effective target reached in {result.analyses} analyses")
    out(f"wrote {output} and {masks_out}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    tables = (("scores", SCORES), ("allocations", ALLOCATIONS), ("--structured", CRITERIA))
    for title, table in tables:
        out(f"{title}:")
        for name in sorted(table):
            spelled = next((k for k, v in ALIASES.items() if v == name and "+" in k), name)
            out(f"  {spelled:<12} {table[name].summary}")
    return 0
