"""``run_batch``: collect the models, skip those already done, run the rest, write the results.

The results are ``OUT/batch.jsonl`` (one JSON object per model, in input order) and
``OUT/batch.json`` (``"kind": "batch"``: the totals and the same results; ``onnxprune report``
renders it). Both are written atomically once every model has finished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onnxprune.batch.executors import run_jobs
from onnxprune.batch.items import BatchItem, collect_items
from onnxprune.batch.job import ItemResult, Job, finished
from onnxprune.batch.options import PruneOptions, fingerprint
from onnxprune.model import DEFAULT_MAX_BYTES, write_text_atomic
from onnxprune.report import text_table

RESULTS = "batch.jsonl"
SUMMARY = "batch.json"


def default_memory_limit() -> int | None:
    """The machine's physical memory: what a worker may add by default (``None`` if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


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
        on_start: called once with the number of models.
        on_done: called with each result as it arrives (skipped models first).

    Returns:
        A ``BatchResult``; ``OUT/batch.jsonl`` and ``OUT/batch.json`` hold it.

    Raises:
        InvalidOptionError: a bad source, manifest, option or executor (before any model runs).
    """
    from onnxprune import __version__

    out = Path(out)
    items = collect_items(source, out, options or PruneOptions(), data_dir)
    default_limit = default_memory_limit() if memory_limit == -1 else memory_limit
    prepared = [
        _job(item, out, default_limit, provider, batch_size, max_bytes, __version__)
        for item in items
    ]
    if on_start is not None:
        on_start(len(prepared))
    out.mkdir(parents=True, exist_ok=True)
    results: list[ItemResult | None] = [None] * len(prepared)
    todo = []
    for index, job in enumerate(prepared):
        done = None if force else finished(job)
        if done is None:
            todo.append(index)
            continue
        results[index] = done
        if on_done is not None:
            on_done(done)
    ran = run_jobs(
        [prepared[i] for i in todo],
        executor=executor,
        workers=jobs,
        address=address,
        on_done=on_done,
    )
    for index, result in zip(todo, ran, strict=True):
        results[index] = result
    batch = BatchResult(out, tuple(r for r in results if r is not None))
    lines = "".join(json.dumps(r.to_dict()) + "\n" for r in batch.results)
    write_text_atomic(out / RESULTS, lines)
    write_text_atomic(out / SUMMARY, json.dumps(batch.to_dict(), indent=2))
    return batch


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
        fingerprint=fingerprint(item.options, item.data, version),
        memory_limit=item.limit(default_limit),
        provider=provider,
        batch_size=batch_size,
        max_bytes=max_bytes,
    )


def format_batch(batch: BatchResult) -> str:
    """The batch as a text table, one row per model, and a totals line."""
    header = ("model", "status", "target", "direct", "effective", "top-1", "dense top-1", "time")
    rows = [
        (
            r.model,
            r.status + (" (streamed)" if r.streamed else ""),
            "n/a" if r.target is None else f"{r.target:g}",
            _pct(r.direct_sparsity),
            _pct(r.effective_sparsity),
            _pct(r.accuracy),
            _pct(r.baseline_accuracy),
            f"{r.seconds:.1f}s",
        )
        for r in batch.results
    ]
    lines = text_table(header, rows, "<<>>>>>>")
    lines.append(
        f"{len(batch.results)} models: {batch.count('ok')} pruned, {batch.count('skipped')} "
        f"already done, {batch.count('failed')} failed"
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
