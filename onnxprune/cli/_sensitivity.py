"""``onnxprune sensitivity``: each layer pruned alone at several levels, its metric measured."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from onnxprune.cli._common import (
    ItemsBar,
    add_class_axis,
    add_debug,
    add_input_shape,
    add_max_bytes,
    err,
    out,
    parse_dims,
    parse_input_shapes,
    print_failures,
)
from onnxprune.cli._signals import Stopped, stoppable
from onnxprune.runtime import PROVIDERS


def add(sub: argparse._SubParsersAction) -> None:
    """The ``sensitivity`` subcommand."""
    p = sub.add_parser(
        "sensitivity",
        help="prune each layer alone at several levels and measure the metric (curves, HTML)",
        description=(
            "For every prunable layer (and with --structured every structured layer, a residual "
            "sum's members together): prune it alone to each level, the rest dense, and measure "
            "the metric on --data with ONNX Runtime. Prints one table, writes OUT/sensitivity.json "
            "(for `prune --allocation sensitivity --sensitivity`) and OUT/index.html (a plot per "
            "layer). Exits 4 when some layers could not be measured (they are listed)."
        ),
    )
    p.add_argument("model", help="path of the dense .onnx model")
    p.add_argument("--data", required=True, metavar="NPZ", help="evaluation data (.npz)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the JSON and HTML")
    p.add_argument(
        "--levels",
        default="0.1,0.3,0.5,0.7,0.9",
        metavar="S1,S2,...",
        help="sparsities in (0, 1) each layer is pruned to (default 0.1,0.3,0.5,0.7,0.9)",
    )
    p.add_argument(
        "--score",
        default="magnitude",
        help="unstructured score, one that needs no data (default magnitude)",
    )
    p.add_argument(
        "--structured",
        nargs="?",
        const="l1",
        metavar="CRITERION",
        help="also one curve per structured layer, its units removed by CRITERION (l1 when "
        "none is given, l2, random)",
    )
    p.add_argument(
        "--metric",
        default="top1",
        help="what is measured: top1 (default) or top5, against the labels, or a comparison "
        "with the dense model, its worst output (cosine, agreement, mean_abs_error, "
        "max_rel_error...: the metrics of `onnxprune validate`)",
    )
    add_class_axis(p)
    p.add_argument("--layers", metavar="REGEX", help="only the weights whose name matches")
    p.add_argument("--exclude", metavar="REGEX", help="not the weights whose name matches")
    p.add_argument("--jobs", type=int, default=1, help="layers in parallel processes (default 1)")
    p.add_argument("--provider", choices=PROVIDERS, default="auto", help="ONNX Runtime provider")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of random scores and criteria")
    add_input_shape(p)
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_sensitivity, own_bars=True)


def _sensitivity(args: argparse.Namespace) -> int:
    from onnxprune.sensitivity import HTML_NAME, JSON_NAME, format_sensitivity, parse_levels

    levels = parse_levels(args.levels)
    done = []
    try:
        with stoppable():
            result = _run(args, levels, done.append)
    except Stopped as stop:
        err(
            f"sensitivity stopped by {stop} after {len(done)} layers: {args.out} holds no new "
            "sensitivity.json or index.html"
        )
        return stop.exit_code
    out(format_sensitivity(result))
    out(f"wrote {args.out}/{JSON_NAME} and {args.out}/{HTML_NAME}")
    failed = [(curve.name, curve.error) for curve in result.failed]
    return print_failures(failed, len(result.layers) + len(result.groups), "layers")


def _run(args: argparse.Namespace, levels: tuple[float, ...], on_done: Callable) -> object:
    """``analyze_sensitivity`` as the flags ask, with a progress bar on a terminal."""
    from onnxprune.sensitivity import analyze_sensitivity

    with ItemsBar("sensitivity", "layer") as bar:
        return analyze_sensitivity(
            args.model,
            args.data,
            out=args.out,
            levels=levels,
            score=args.score,
            structured=args.structured,
            metric=args.metric,
            layers=args.layers,
            exclude=args.exclude,
            jobs=args.jobs,
            provider=args.provider,
            batch_size=args.batch_size,
            seed=args.seed,
            max_bytes=args.max_bytes,
            input_shapes=parse_input_shapes(args.input_shape),
            dims=parse_dims(args.dim),
            class_axis=args.class_axis,
            on_start=bar.start,
            on_done=bar.counted(on_done),
        )
