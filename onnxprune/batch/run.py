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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from onnxprune.batch.executors import check_executor, run_jobs
from onnxprune.batch.items import BatchItem, collect_items
from onnxprune.batch.job import ItemResult, Job, finished
from onnxprune.batch.lock import lock_folder
from onnxprune.batch.options import fingerprint
from onnxprune.choice import Candidate, accuracy_vs_cost, gate_options, pareto_front, recommend
from onnxprune.errors import InvalidOptionError
from onnxprune.macs import short
from onnxprune.metrics import check_class_axis
from onnxprune.model import DEFAULT_MAX_BYTES, write_text_atomic
from onnxprune.options import PruneOptions
from onnxprune.report import GateResult, text_table
from onnxprune.sizes import format_size, physical_memory
from onnxprune.user_metrics import load_metric

RESULTS = "batch.jsonl"
SUMMARY = "batch.json"
REPORT = "batch.md"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every model's result, in input order, and where they were written.

    With a gate (``max_accuracy_drop``, ``min_agreement``), each evaluated model is judged by
    ``validation.decide_gate`` and the recommended one is the most compressed that passes
    (``onnxprune.choice``); ``front_macs`` marks the Pareto front of accuracy vs MACs.
    """

    out: Path
    results: tuple[ItemResult, ...]
    gate: Mapping[str, float] = field(default_factory=dict)

    @property
    def gates(self) -> tuple[GateResult | None, ...]:
        """Per model: the gate's decision, ``None`` without a gate or an evaluation."""
        if not self.gate:
            return tuple(None for _ in self.results)
        return tuple(_judge(r, self.gate) for r in self.results)

    @property
    def front_macs(self) -> tuple[bool, ...]:
        """Per model: on the Pareto front of accuracy (agreement without labels) vs MACs."""
        return pareto_front([accuracy_vs_cost(_accuracy(r), r.nonzero_macs) for r in self.results])

    @property
    def recommended(self) -> ItemResult | None:
        """The most compressed model that passed the gate (``onnxprune.choice.recommend``)."""
        candidates = [
            Candidate(r.model, gate is not None and gate.passed, r.nonzero_macs, r.size_bytes)
            for r, gate in zip(self.results, self.gates, strict=True)
        ]
        index = recommend(candidates)
        return None if index is None else self.results[index]

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
            "results": [
                {
                    **r.to_dict(),
                    "passed": None if gate is None else gate.passed,
                    "gate_reason": None if gate is None else gate.reason,
                    "front_macs": front,
                }
                for r, gate, front in zip(self.results, self.gates, self.front_macs, strict=True)
            ],
            "gated": bool(self.gate),
            "recommended": None if self.recommended is None else self.recommended.output,
        }


def _accuracy(result: ItemResult) -> float | None:
    return result.accuracy if result.accuracy is not None else result.agreement


def _judge(result: ItemResult, gate: Mapping[str, float]) -> GateResult | None:
    """The gate on a model's evaluation; ``None`` when it was not evaluated (or lacks labels)."""
    drop = gate.get("max_accuracy_drop")
    if result.agreement is None or (drop is not None and result.accuracy is None):
        return None
    limits = {k: v for k, v in gate.items() if k != "max_accuracy_drop"}
    from onnxprune.validation import decide_gate

    outputs = {"first output": {"agreement": result.agreement}}
    return decide_gate(result.accuracy, result.baseline_accuracy, drop, limits, outputs, {})


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
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    class_axis: int | None = None,
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
        max_accuracy_drop: gate of every evaluated model: top-1 before pruning minus after at
            most this (needs labels); the recommended model is the most compressed that passes.
        min_agreement: gate: top-1 agreement with the model before pruning at least this.
        class_axis: the axis of the classes: accuracy and agreement of every evaluated model
            per position (token, pixel), as ``validate`` measures them; a manifest entry's
            ``class_axis`` replaces it.
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
    gate = gate_options(max_accuracy_drop, min_agreement)
    check_class_axis(class_axis)
    out = Path(out)
    items = collect_items(
        source, out, options or PruneOptions(), data_dir, (RESULTS, SUMMARY, REPORT)
    )
    items = [item if item.metric else replace(item, metric=metric) for item in items]
    items = [
        item if item.own_axis or item.data is None else replace(item, class_axis=class_axis)
        for item in items
    ]
    if class_axis is not None and all(item.data is None for item in items):
        raise InvalidOptionError(
            "class_axis is read on evaluation data, and no model has any (--data-dir, or a "
            "manifest entry's 'data')"
        )
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
        batch = BatchResult(out, tuple(r for r in results if r is not None), gate)
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
            item.options, item.data, version, item.sensitivity, item.metric, item.class_axis
        ),
        memory_limit=item.limit(default_limit),
        provider=provider,
        batch_size=batch_size,
        max_bytes=max_bytes,
        sensitivity=None if item.sensitivity is None else str(item.sensitivity.resolve()),
        metric=item.metric,
        class_axis=item.class_axis,
    )


def format_batch(batch: BatchResult) -> str:
    """The batch as a text table, one row per model, and a totals line.

    ``cosine`` is the mean cosine similarity with the unpruned model of the worst output;
    ``gate`` the gate's verdict, ``front`` ``M`` on the Pareto front of accuracy vs MACs. With
    a gate, the last line names the recommended model (its output path).
    """
    header = (
        "model",
        "status",
        "target",
        "direct",
        "effective",
        "MACs",
        "size",
        "top-1",
        "dense top-1",
        "cosine",
        "gate",
        "front",
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
            format_size(r.size_bytes),
            _pct(r.accuracy),
            _pct(r.baseline_accuracy),
            _cosine(r),
            "-" if gate is None else ("passed" if gate.passed else "FAILED"),
            "M" if front else "",
            f"{r.seconds:.1f}s",
        )
        for r, gate, front in zip(batch.results, batch.gates, batch.front_macs, strict=True)
    ]
    lines = text_table(header, rows, "<<" + ">" * (len(header) - 2))
    lines.append(
        f"{len(batch.results)} models: {batch.count('ok')} pruned, {batch.count('skipped')} "
        f"already done, {batch.count('failed')} failed"
    )
    if batch.gate:
        best = batch.recommended
        lines.append(
            "recommended: none passes the gate"
            if best is None
            else f"recommended: {best.output} (from {best.model}; {short(best.nonzero_macs)} MACs "
            f"by nonzero weights, {format_size(best.size_bytes)}), the most compressed model "
            "that passes"
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
