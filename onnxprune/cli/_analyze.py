"""``onnxprune analyze``: direct and effective sparsity per prunable layer."""

from __future__ import annotations

import argparse
import json

from onnxprune.cli._common import (
    add_debug,
    add_input_shape,
    add_max_bytes,
    out,
    parse_dims,
    parse_input_shapes,
)


def add(sub: argparse._SubParsersAction) -> None:
    """The ``analyze`` subcommand."""
    p = sub.add_parser(
        "analyze",
        help="report direct and effective sparsity per prunable layer",
        description=(
            "Report, per prunable weight (Conv, ConvTranspose, Gemm, MatMul; LSTM/GRU/RNN W and R, "
            "per gate too), the direct "
            "sparsity (zero weights) and the effective sparsity (zero weights plus nonzero "
            "weights on no input-to-output path), and the dead input/output units; the "
            "weights more than one node reads (shared, tied). For a model with attention or "
            "recurrent layers (or with --units), also per structured layer (an attention "
            "block's heads, one row per head; an FFN's neurons; an LSTM's hidden units; a "
            "Conv's channels) and per norm, named by module: the count, dead and blocked "
            "units and their weights' sparsity."
        ),
    )
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--exact",
        action="store_true",
        help="position-level reachability (every channel at every spatial position); needs "
        "static shapes. Default: channel level, fast, can only under-report effective sparsity",
    )
    p.add_argument(
        "--units",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the sparsity per unit, named by module: each attention head, each FFN's neurons, "
        "each hidden unit, each norm. Default: on when the model has attention or recurrent "
        "layers; --units also for other models (a CNN's channels: about twice the time), "
        "--no-units never",
    )
    add_input_shape(p)
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from onnxprune.report import format_table
    from onnxprune.sparsity import analyze

    report = analyze(
        args.model,
        level="exact" if args.exact else "channel",
        input_shapes=parse_input_shapes(args.input_shape),
        dims=parse_dims(args.dim),
        max_bytes=args.max_bytes,
        units=args.units,
    )
    if args.json:
        out(json.dumps(report.to_dict(), indent=2))
    else:
        out(format_table(report))
    return 0
