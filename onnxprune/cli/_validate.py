"""``onnxprune validate``: accuracy, comparisons with a baseline and latency, with gates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.cli._common import (
    EXIT_GATE_FAILED,
    add_class_axis,
    add_debug,
    add_metric,
    add_timing_flags,
    err,
    out,
)
from onnxprune.runtime import PROVIDERS

COMPARISON_GATES = (
    ("max_abs_error", "the largest |model - baseline| over every output element"),
    ("max_mean_abs_error", "the mean |model - baseline| of an output"),
    ("max_rel_error", "the largest |model - baseline| / (|baseline| + 1e-6)"),
    ("max_mean_rel_error", "the mean |model - baseline| / (|baseline| + 1e-6) of an output"),
    ("min_cosine", "the cosine similarity with the baseline, mean over samples, of an output"),
    ("min_worst_cosine", "the cosine similarity with the baseline of the worst sample"),
    ("min_agreement", "the fraction of samples whose top-1 class matches the baseline's"),
    ("min_top5_agreement", "the fraction whose baseline top-1 class is in the model's top 5"),
)
"""The gates on comparisons with the baseline (``onnxprune.metrics``'s registry has the same
names; its module is not imported here, so ``--help`` stays fast) and what each holds."""
USER_GATE_FLAGS = (
    ("min_metric", "every value of --metric must be at least X"),
    ("max_metric", "every value of --metric must be at most X"),
)


def add(sub: argparse._SubParsersAction) -> None:
    """The ``validate`` subcommand."""
    p = sub.add_parser(
        "validate",
        help="accuracy, agreement with a baseline and latency on ONNX Runtime, with a gate",
        description=(
            "Run a model on an .npz dataset (one array per graph input, optional integer "
            "'labels') with ONNX Runtime and report top-1/top-5 accuracy, latency and "
            "throughput; with a baseline, every output is compared with the baseline's (max "
            "and mean absolute and relative error, cosine similarity, top-1 and top-5 "
            "agreement; no labels needed). Model and baseline are timed interleaved on the same "
            "batches, repeated until --min-time and --min-runs; the speedup is the baseline's "
            "median over the model's, with a 95%% confidence interval (a bootstrap over the "
            "paired runs). Warnings (timing, outputs compared) go to stderr and the JSON. Exits "
            "3 when a gate fails."
        ),
    )
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("--data", required=True, metavar="NPZ", help="the dataset (.npz)")
    p.add_argument(
        "--baseline", metavar="MODEL", help="model to compare with and time (e.g. unpruned)"
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="X",
        help="gate: fail (exit 3) when baseline top-1 minus model top-1 is more than X",
    )
    for gate, what in COMPARISON_GATES:
        bound = "more" if gate.startswith("max_") else "less"
        p.add_argument(
            "--" + gate.replace("_", "-"),
            type=float,
            metavar="X",
            help=f"gate: fail (exit 3) when {what} is {bound} than X, on any output (needs "
            "--baseline)",
        )
    add_class_axis(p)
    add_metric(p)
    for gate, what in USER_GATE_FLAGS:
        p.add_argument("--" + gate.replace("_", "-"), type=float, metavar="X", help=f"gate: {what}")
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="auto",
        help="execution provider (default auto: CUDA when it starts, else the CPU)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="samples per run (default 64)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed runs first, of each model (default 3)"
    )
    add_timing_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--report-out", metavar="JSON", help="also write the result as JSON")
    add_debug(p)
    p.set_defaults(run=_validate)


def _validate(args: argparse.Namespace) -> int:
    from onnxprune.model import write_text_atomic
    from onnxprune.outputs import check_outputs
    from onnxprune.report import format_validation, gate_line
    from onnxprune.validation import validate

    check_outputs(args.model, args.report_out, reads={"data": args.data}, baseline=args.baseline)
    result = validate(
        args.model,
        args.data,
        baseline=args.baseline,
        provider=args.provider,
        batch_size=args.batch_size,
        warmup=args.warmup,
        min_time=args.min_time,
        min_runs=args.min_runs,
        threads=args.threads,
        max_accuracy_drop=args.max_accuracy_drop,
        limits=gate_limits(args),
        metric=args.metric,
        class_axis=args.class_axis,
    )
    text = json.dumps(result.to_dict(), indent=2)
    if args.report_out:
        write_text_atomic(Path(args.report_out), text)
    failed = result.gate is not None and not result.gate.passed
    out(text if args.json else format_validation(result))
    for warning in result.warnings:
        err(f"warning: {warning}")
    if failed:  # on stderr too, so a pipeline log shows it whatever it keeps of stdout
        err(f"gate {gate_line(result.gate)}")
    return EXIT_GATE_FAILED if failed else 0


def gate_limits(args: argparse.Namespace) -> dict[str, float]:
    """The comparison and user-metric gates given on the command line, by name."""
    gates = [gate for gate, _ in (*COMPARISON_GATES, *USER_GATE_FLAGS)]
    return {gate: getattr(args, gate) for gate in gates if getattr(args, gate) is not None}
