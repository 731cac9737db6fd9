"""``onnxprune compact``: dead units out, outputs kept."""

from __future__ import annotations

import argparse

from onnxprune.cli._common import (
    add_debug,
    add_input_shape,
    add_max_bytes,
    parse_dims,
    parse_input_shapes,
)
from onnxprune.cli._results import print_compact


def add(sub: argparse._SubParsersAction) -> None:
    """The ``compact`` subcommand."""
    p = sub.add_parser(
        "compact",
        help="remove dead channels and neurons, giving a smaller dense model",
        description=(
            "Remove every dead channel or neuron: units of Conv/Gemm/MatMul layers that no later "
            "layer reads, or that only carry a constant (their bias), whose constant is then "
            "folded into the next layers' biases so outputs do not change. Units are removed "
            "with everything tied to them (BatchNorm statistics, residual sums, Concat and "
            "Split sizes, flattened features, depthwise convolutions, Reshape targets); units "
            "that reach a graph output or an op onnxprune cannot follow are kept. Prints, per "
            "layer, the units removed, named by module and counted as prune --structured counts "
            "them (an attention block's heads, an FFN's neurons, a Conv's channels)."
        ),
    )
    p.add_argument("model", help="path of the .onnx model (never overwritten)")
    p.add_argument("-o", "--output", required=True, help="path of the compacted .onnx model")
    p.add_argument("--report-out", metavar="JSON", help="also write the result as JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_input_shape(p)
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_compact)


def _compact(args: argparse.Namespace) -> int:
    from onnxprune.verbs import compact

    result = compact(
        args.model,
        output=args.output,
        report_out=args.report_out,
        max_bytes=args.max_bytes,
        input_shapes=parse_input_shapes(args.input_shape),
        dims=parse_dims(args.dim),
    )
    print_compact(result.to_dict(), args)
    return 0
