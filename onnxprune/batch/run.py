"""``run_batch``: collect the models, skip those already done, run the rest, write the results.

The results are ``OUT/batch.jsonl`` (one JSON object per model), ``OUT/batch.json``
(``"kind": "batch"``: the totals and the same results; ``onnxprune report`` renders it) and
``OUT/batch.md`` (that rendered as Markdown).

What is on disk always agrees with ``batch.jsonl``; every line describes files that are there:

- one run at a time: the run holds ``lock.lock_folder(OUT)`` from before it looks at the folder
  until its last file is written; a second run into the same folder fails at once;
- a model's outputs are written atomically, its marker ``<stem>.batch.json`` last (``job.py``);
- under the lock, ``batch.jsonl`` first gets the models already done, and ``batch.json`` and
  ``batch.md`` (which describe the previous run) are removed; each other model's line is appended
  once its marker is written. A model that fails leaves no outputs and no marker (what an
  earlier run left of it is removed), only its ``failed`` line;
- at the end ``batch.jsonl`` is rewritten in input order, then ``batch.json`` and ``batch.md``.

An interrupted run (Ctrl-C, ``kill -9``, a crash) thus leaves ``batch.jsonl`` with the models done
so far, in the order they finished, and no summary; a rerun picks up where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from onnxprune.batch.executors import check_executor, run_jobs
from onnxprune.batch.items import BatchItem, collect_items
from onnxprune.batch.job import ItemResult, Job, finished
from onnxprune.batch.lock import lock_folder
from onnxprune.batch.options import fingerprint
from onnxprune.macs import short
from onnxprune.model import DEFAULT_MAX_BYTES, write_text_atomic
from onnxprune.options import PruneOptions
from onnxprune.report import text_table
from onnxprune.sizes import physical_memory
from onnxprune.user_metrics import load_metric

RESULTS = "batch.jsonl"
SUMMARY = "batch.json"
REPORT = "batch.md"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every model's result, in input order, and where they were written."""

    out: Path
    results: tuple[ItemResult, ...]

    @property
    def failed(self) -> tuple[ItemResult, ...]:
        """Models that failed."""
        return tuple(r for r in self.results if r.status == "failed")

    def count(self, status: str) -> int:
        """Models with ``status`` (``ok``, ``failed``, ``skipped``)."""
        return sum(r.status == status for r in self.results)

    def to_dict(self) -> dict:
        """The batch document (``"kind": "batch"``)."""
        return {
            "kind": "batch",
            "models": len(self.results),
            "ok": self.count("ok"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "seconds": sum(r.seconds for r in self.results if r.status != "skipped"),
            "results": [r.to_dict() for r in self.results],
        }


def run_batch(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    options: PruneOptions | None = None,
    data_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    executor: str = "local",
    address: str | None = None,
    force: bool = False,
    memory_limit: int | None = -1,
    provider: str = "auto",
    batch_size: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    metric: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[ItemResult], None] | None = None,
) -> BatchResult:
    """Prune every model of a directory or manifest into ``out``, each in its own worker.

    Args:
        source: a directory (every ``*.onnx`` below it) or a YAML/JSON manifest
            (see ``onnxprune.batch.items``).
        out: the output folder; the models' relative layout is kept in it.
        options: prune options for every model (a manifest may override them per model).
        data_dir: evaluation data by relative path (``DATA_DIR/<model path>.npz``).
        jobs: models pruned at once (local default 1; Ray default: as the cluster allows).
        executor: ``"local"`` worker processes or ``"ray"``.
        address: the Ray cluster to join (``"auto"``); default a local Ray instance.
        force: redo models that are already done.
        memory_limit: bytes of address space a worker may add per model; ``None`` for no
            limit; ``-1`` (default) for the machine's physical memory.
        provider: ONNX Runtime provider for evaluation.
        batch_size: evaluation batch size.
        max_bytes: largest model accepted (file plus external data).
        metric: a user metric (``module:function``, see ``onnxprune.user_metrics``) measured on
            every model that has evaluation data; a manifest entry's ``metric`` replaces it.
        on_start: called once with the number of models, once ``out`` is locked.
        on_done: called with each result as it arrives (skipped models first).

    Returns:
        A ``BatchResult``; ``OUT/batch.jsonl``, ``OUT/batch.json`` and ``OUT/batch.md`` hold it.

    Raises:
        InvalidOptionError: a bad source, manifest, option or executor, or another batch
            running into ``out`` (before any model runs).
    """
    from onnxprune import __version__

    check_executor(executor, jobs, address)  # before any model is read
    out = Path(out)
    items = collect_items(
        source, out, options or PruneOptions(), data_dir, (RESULTS, SUMMARY, REPORT)
    )
    items = [item if item.metric else replace(item, metric=metric) for item in items]
    for spec in sorted({item.metric for item in items if item.metric}):
        load_metric(spec)  # one that cannot be imported fails the batch before any model
    default_limit = physical_memory() if memory_limit == -1 else memory_limit
    prepared = [
        _job(item, out, default_limit, provider, batch_size, max_bytes, __version__)
        for item in items
    ]
    out.mkdir(parents=True, exist_ok=True)
    with lock_folder(out):
        if on_start is not None:
            on_start(len(prepared))
        results = [None if force else finished(job) for job in prepared]
        _start_files(out, [r for r in results if r is not None])
        for done in results:
            if done is not None and on_done is not None:
                on_done(done)
        todo = [i for i, r in enumerate(results) if r is None]
        by_output = {prepared[i].output_name: prepared[i] for i in todo}
        ran = run_jobs(
            [prepared[i] for i in todo],
            executor=executor,
            workers=jobs,
            address=address,
            on_done=partial(_record, out, by_output, on_done),
        )
        for index, result in zip(todo, ran, strict=True):
            results[index] = result
        batch = BatchResult(out, tuple(r for r in results if r is not None))
        _finish_files(batch)
    return batch


def _line(result: ItemResult) -> str:
    return json.dumps(result.to_dict()) + "\n"


def _start_files(out: Path, done: list[ItemResult]) -> None:
    """``batch.jsonl`` with the models already done; the previous run's summaries removed."""
    write_text_atomic(out / RESULTS, "".join(_line(r) for r in done))
    for name in (SUMMARY, REPORT):
        (out / name).unlink(missing_ok=True)


def _record(
    out: Path,
    by_output: dict[str, Job],
    on_done: Callable[[ItemResult], None] | None,
    result: ItemResult,
) -> None:
    """A model has finished: its line goes at the end of ``batch.jsonl``, then ``on_done``.

    A failed model first loses what it (or an earlier run of it) left: marker, then outputs.
    """
    if result.status == "failed":
        job = by_output[result.output]
        job.marker.unlink(missing_ok=True)
        job.files.remove()
    with (out / RESULTS).open("a", encoding="utf-8") as f:
        f.write(_line(result))
    if on_done is not None:
        on_done(result)


def _finish_files(batch: BatchResult) -> None:
    """``batch.jsonl`` in input order, then ``batch.json`` and ``batch.md``, each atomically."""
    # Imported here: rendering loads matplotlib, which pruning does not need.
    from onnxprune.render import render_markdown

    write_text_atomic(batch.out / RESULTS, "".join(_line(r) for r in batch.results))
    document = batch.to_dict()
    write_text_atomic(batch.out / SUMMARY, json.dumps(document, indent=2))
    write_text_atomic(batch.out / REPORT, render_markdown(document))


def _job(
    item: BatchItem,
    out: Path,
    default_limit: int | None,
    provider: str,
    batch_size: int,
    max_bytes: int,
    version: str,
) -> Job:
    output = (out / item.output).resolve()
    return Job(
        model=str(item.model.resolve()),
        name=item.name,
        output=str(output),
        output_name=str(item.output),
        data=None if item.data is None else str(item.data.resolve()),
        options=item.options,
        fingerprint=fingerprint(
            item.options, item.data, version, item.sensitivity, metric=item.metric
        ),
        memory_limit=item.limit(default_limit),
        provider=provider,
        batch_size=batch_size,
        max_bytes=max_bytes,
        sensitivity=None if item.sensitivity is None else str(item.sensitivity.resolve()),
        metric=item.metric,
    )


def format_batch(batch: BatchResult) -> str:
    """The batch as a text table, one row per model, and a totals line.

    ``cosine`` is the mean cosine similarity with the unpruned model of the worst output.
    """
    header = (
        "model",
        "status",
        "target",
        "direct",
        "effective",
        "MACs",
        "top-1",
        "dense top-1",
        "cosine",
        "time",
    )
    rows = [
        (
            r.model,
            r.status + (" (streamed)" if r.streamed else ""),
            "n/a" if r.target is None else f"{r.target:g}",
            _pct(r.direct_sparsity),
            _pct(r.effective_sparsity),
            _macs(r),
            _pct(r.accuracy),
            _pct(r.baseline_accuracy),
            _cosine(r),
            f"{r.seconds:.1f}s",
        )
        for r in batch.results
    ]
    lines = text_table(header, rows, "<<" + ">" * (len(header) - 2))
    lines.append(
        f"{len(batch.results)} models: {batch.count('ok')} pruned, {batch.count('skipped')} "
        f"already done, {batch.count('failed')} failed"
    )
    return "\n".join(lines)


def _macs(result: ItemResult) -> str:
    """``4.11G -> 1.2G``: the dense MACs before, those by nonzero weights after."""
    if result.macs is None and result.baseline_macs is None:
        return "n/a"
    return f"{short(result.baseline_macs)} -> {short(result.nonzero_macs)}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _cosine(result: ItemResult) -> str:
    value = result.comparison.get("cosine")
    return "n/a" if value is None else f"{value:.4f}"
