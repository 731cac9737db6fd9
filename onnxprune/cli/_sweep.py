"""``onnxprune sweep``: every method at every sparsity, validated, with a combined report."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from onnxprune.cli._common import (
    ItemsBar,
    add_choice_gate,
    add_class_axis,
    add_debug,
    add_input_shape,
    add_metric,
    add_timing_flags,
    err,
    out,
    parse_dims,
    parse_input_shapes,
    print_failures,
)
from onnxprune.cli._signals import Stopped, stoppable
from onnxprune.runtime import PROVIDERS

if TYPE_CHECKING:
    from onnxprune.sweep import SweepResult, SweepRun


def add(sub: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep",
        help="prune with several methods at several sparsities and validate every result",
        description=(
            "For every METHOD (SCORE/ALLOCATION) and every sparsity: prune, write the model, its "
            "masks and report, validate it against the dense model on --data. Writes "
            "OUT/sweep.json (render it with `onnxprune report`) and prints one table. Exits 4 "
            "when some runs failed (they are listed), 0 when all succeeded. Ctrl-C (SIGINT) or "
            "SIGTERM stops it at once: the runs done stay in OUT, a run cut short leaves no "
            "files, sweep.json is not written; exit 130 or 143. With a gate "
            "(--max-accuracy-drop, --min-agreement) it names the recommended run, the most "
            "compressed that passes (fewest MACs, then the smallest file), and exits 3 when "
            "none does."
        ),
    )
    p.add_argument("model", help="path of the dense .onnx model")
    p.add_argument("--data", required=True, metavar="NPZ", help="evaluation data (.npz)")
    p.add_argument(
        "--sparsities", required=True, metavar="S1,S2,...", help="targets, e.g. 0.5,0.8,0.9"
    )
    p.add_argument(
        "--methods",
        default="magnitude/global",
        metavar="SCORE/ALLOC,...",
        help="e.g. magnitude/global,magnitude/erk,lamp/global (default magnitude/global)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for everything written")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    p.add_argument("--effective", action="store_true", help="targets are effective sparsities")
    p.add_argument("--exact", action="store_true", help="exact-level reports and targets")
    add_input_shape(p)
    p.add_argument("--provider", choices=PROVIDERS, default="auto", help="ONNX Runtime provider")
    p.add_argument("--batch-size", type=int, default=64, help="validation batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of random scores")
    p.add_argument(
        "--sensitivity",
        metavar="JSON",
        help="curves of `onnxprune sensitivity`, for methods SCORE/sensitivity",
    )
    add_choice_gate(p, "run")
    add_class_axis(p)
    add_timing_flags(p)
    add_metric(p)
    add_debug(p)
    p.set_defaults(run=_sweep, own_bars=True)


def _sweep(args: argparse.Namespace) -> int:
    from onnxprune.sweep import format_sweep, parse_methods, parse_sparsities, sweep_warnings

    methods = parse_methods(args.methods)
    sparsities = parse_sparsities(args.sparsities)
    total, done = len(methods) * len(sparsities), []
    try:
        with stoppable():
            result = _run(args, methods, sparsities, done.append)
    except Stopped as stop:
        err(
            f"sweep stopped by {stop}: the {len(done)} of {total} runs done are in {args.out} "
            "(sweep.json not written; unfinished runs left no files)"
        )
        return stop.exit_code
    out(format_sweep(result))
    out(f"wrote {args.out}/sweep.json (render: onnxprune report {args.out}/sweep.json --html ...)")
    for warning in sweep_warnings(result):
        err(f"warning: {warning}")
    failed = [(f"{run.method} at {run.sparsity:g}", run.error) for run in result.failed]
    code = print_failures(failed, total, "runs")
    if code == 0 and result.gated and result.recommended is None:
        err("gate FAILED: no run passes the gate")
        return 3
    return code


def _run(
    args: argparse.Namespace,
    methods: list[tuple[str, str]],
    sparsities: list[float],
    on_done: Callable[[SweepRun], None],
) -> SweepResult:
    """``sweep`` as the flags ask, with a progress bar on a terminal."""
    from onnxprune.sweep import sweep

    with ItemsBar("sweep", "run", len(methods) * len(sparsities)) as bar:
        return sweep(
            args.model,
            args.data,
            args.out,
            sparsities=sparsities,
            methods=methods,
            jobs=args.jobs,
            effective=args.effective,
            level="exact" if args.exact else "channel",
            input_shapes=parse_input_shapes(args.input_shape),
            dims=parse_dims(args.dim),
            provider=args.provider,
            batch_size=args.batch_size,
            seed=args.seed,
            sensitivity=args.sensitivity,
            min_time=args.min_time,
            min_runs=args.min_runs,
            threads=args.threads,
            metric=args.metric,
            max_accuracy_drop=args.max_accuracy_drop,
            min_agreement=args.min_agreement,
            class_axis=args.class_axis,
            on_done=bar.counted(on_done),
        )
