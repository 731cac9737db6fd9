"""``onnxprune batch``: prune every model of a directory or manifest, resumable, local or Ray."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from onnxprune import progress
from onnxprune.batch.executors import EXECUTORS
from onnxprune.cli._common import (
    ItemsBar,
    add_choice_gate,
    add_class_axis,
    add_debug,
    add_max_bytes,
    add_metric,
    add_prune_flags,
    err,
    flag_options,
    out,
    print_failures,
)
from onnxprune.cli._signals import Stopped, stoppable
from onnxprune.options import PruneOptions, merge_options
from onnxprune.runtime import PROVIDERS
from onnxprune.sizes import parse_size

if TYPE_CHECKING:
    from onnxprune.batch.job import ItemResult
    from onnxprune.batch.run import BatchResult


def add(sub: argparse._SubParsersAction) -> None:
    """The ``batch`` subcommand."""
    p = sub.add_parser(
        "batch",
        help="prune every model of a directory or manifest, each in its own worker",
        description=(
            "Prune every *.onnx under DIR (recursively), or the models a YAML/JSON manifest "
            "lists with their own options and evaluation data, into OUT with the same layout. "
            "Each model runs in a worker process (or a Ray task) with a memory limit; a model "
            "that fails is recorded and the others go on. Models with external data are pruned "
            "tensor by tensor. A rerun skips models already done with the same options "
            "(--force redoes them). Writes OUT/batch.jsonl (one line per model), "
            "OUT/batch.json and OUT/batch.md. Exits 4 when some models failed (listed on "
            "stderr), 0 when all succeeded. Ctrl-C (SIGINT) or SIGTERM stops it at once: its "
            "workers are killed, batch.jsonl lists the models done, a rerun goes on from there; "
            "exit 130 or 143."
        ),
    )
    p.add_argument("source", metavar="DIR|MANIFEST", help="a folder of models or a manifest")
    p.add_argument("--out", required=True, metavar="OUT", help="folder for everything written")
    add_prune_flags(p, defaults=False)
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="evaluation data: DIR/<model path>.npz is used when it exists",
    )
    p.add_argument("--jobs", type=int, help="models at once (local default 1)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="where models run")
    p.add_argument("--address", help="Ray cluster to join, e.g. auto (default: a local Ray)")
    p.add_argument("--force", action="store_true", help="redo models that are already done")
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        default="ram",
        help="memory a worker may add per model, e.g. 4G; 0 for none (default: the RAM)",
    )
    p.add_argument("--provider", choices=PROVIDERS, default="auto", help="ONNX Runtime provider")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    add_metric(p)
    add_choice_gate(p, "model")
    add_class_axis(p)
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_batch, own_bars=True)


def _batch(args: argparse.Namespace) -> int:
    from onnxprune.batch import format_batch
    from onnxprune.batch.run import REPORT, RESULTS, SUMMARY

    options = merge_options(PruneOptions(), flag_options(args), "command line")
    limit = -1 if args.memory_limit == "ram" else parse_size(args.memory_limit)
    folder, done = Path(args.out), []
    try:
        with stoppable():
            batch = _run(args, options, limit, done.append)
    except Stopped as stop:
        err(
            f"batch stopped by {stop}: the {len(done)} models done are in {folder / RESULTS}; "
            "run the same command again to go on"
        )
        return stop.exit_code
    out(format_batch(batch))
    out(f"wrote {folder / RESULTS}, {folder / SUMMARY} and {folder / REPORT}")
    failed = [(result.model, result.error) for result in batch.failed]
    code = print_failures(failed, len(batch.results), "models")
    if code == 0 and batch.gate and batch.recommended is None:
        err("gate FAILED: no model passes the gate")
        return 3
    return code


def _run(
    args: argparse.Namespace,
    options: PruneOptions,
    limit: int | None,
    on_done: Callable[[ItemResult], None],
) -> BatchResult:
    """``run_batch`` as the flags ask, with a progress bar on a terminal."""
    from onnxprune.batch import run_batch

    with (
        ItemsBar("batch", "model") as bar,
        progress.listening(lambda report: bar.note(report.note)),
    ):
        return run_batch(
            args.source,
            args.out,
            options=options,
            data_dir=args.data_dir,
            jobs=args.jobs,
            executor=args.executor,
            address=args.address,
            force=args.force,
            memory_limit=limit,
            provider=args.provider,
            batch_size=args.batch_size,
            max_bytes=args.max_bytes,
            metric=args.metric,
            max_accuracy_drop=args.max_accuracy_drop,
            min_agreement=args.min_agreement,
            class_axis=args.class_axis,
            on_start=bar.start,
            on_done=bar.counted(on_done),
        )
