"""``onnxprune validate``: accuracy, agreement and latency on ONNX Runtime, with a gate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.cli._common import EXIT_GATE_FAILED, add_debug, err, out
from onnxprune.runtime import PROVIDERS


def add(sub: argparse._SubParsersAction) -> None:
    """The ``validate`` subcommand."""
    p = sub.add_parser(
        "validate",
        help="accuracy, agreement with a baseline and latency on ONNX Runtime, with a gate",
        description=(
            "Run a model on an .npz dataset (one array per graph input, optional integer "
            "'labels') with ONNX Runtime and report top-1/top-5 accuracy, agreement and output "
            "difference with a baseline, latency and throughput; the baseline is timed on the "
            "same batches, and the speedup is its p50 over the model's. Exits 3 when the gate "
            "fails."
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
    p.add_argument(
        "--min-agreement",
        type=float,
        metavar="Y",
        help="gate: fail (exit 3) when fewer than a fraction Y of top-1 classes match the baseline",
    )
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
        max_accuracy_drop=args.max_accuracy_drop,
        min_agreement=args.min_agreement,
    )
    text = json.dumps(result.to_dict(), indent=2)
    if args.report_out:
        write_text_atomic(Path(args.report_out), text)
    failed = result.gate is not None and not result.gate.passed
    out(text if args.json else format_validation(result))
    if failed:  # on stderr too, so a pipeline log shows it whatever it keeps of stdout
        err(f"gate {gate_line(result.gate)}")
    return EXIT_GATE_FAILED if failed else 0
