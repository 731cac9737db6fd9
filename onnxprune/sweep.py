"""Sweeps: prune one model with several methods at several sparsities, validate every result.

Each run (method x sparsity) is independent, so runs go to worker processes (``jobs``). Every
pruned model is written with its masks and its sparsity report; the sweep itself is one JSON
document (``sweep.json``), the source of truth for the tables and plots rendered from it. Each
run is timed against the dense model as ``validate`` times (``onnxprune.latency``): its speedup
comes with a confidence interval, and its timing warnings are kept with it. Runs in parallel
(``jobs`` > 1) share the machine while they are timed; the pairs make that widen the intervals
rather than bias the speedups, but ``jobs=1`` gives the tightest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onnxprune.choice import (
    Candidate,
    accuracy_vs_cost,
    accuracy_vs_gain,
    gate_options,
    pareto_front,
    recommend,
)
from onnxprune.errors import InvalidOptionError, OnnxpruneError
from onnxprune.labels import declared_classes
from onnxprune.latency import (
    CONFIDENCE,
    MIN_RUNS,
    MIN_TIME,
    THREADS,
    check_timing,
    named_warnings,
)
from onnxprune.macs import short
from onnxprune.metrics import check_class_axis, worst
from onnxprune.model import (
    data_files,
    load_model,
    make_folder,
    remove_stale_temporaries,
    write_text_atomic,
)
from onnxprune.outputs import PrunedFiles, check_outputs, save_pruned
from onnxprune.processes import run_in_processes
from onnxprune.pruners.registry import get_allocation, get_score
from onnxprune.report import compression, text_table
from onnxprune.sizes import format_size
from onnxprune.user_metrics import UserMetric, load_metric
from onnxprune.validation import ValidationResult, load_dataset, validate
from onnxprune.verbs import prune


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One pruned model of a sweep: what was asked, what came out, how it validated.

    ``error`` holds a one-line message when the run failed (the other results are then None).
    ``macs`` are the pruned model's dense multiply-accumulates (those of the dense model: a mask
    keeps the shapes), ``nonzero_macs`` those by nonzero weights (``onnxprune.macs``).
    ``speedup`` is the dense model's median latency per batch over this one's, ``speedup_low``
    and ``speedup_high`` its confidence interval, ``warnings`` what makes the timing doubtful.
    ``comparison`` holds each comparison with the dense model (``onnxprune.metrics``) at its
    worst over the outputs; ``user_metrics`` the values of ``sweep(metric=...)``.
    ``size_bytes`` is the pruned model file's size; ``passed`` and ``gate_reason`` the sweep's
    gate on this run (``None`` without one).
    """

    method: str
    score: str
    allocation: str
    sparsity: float
    direct_sparsity: float | None = None
    effective_sparsity: float | None = None
    macs: int | None = None
    nonzero_macs: int | None = None
    top1: float | None = None
    agreement: float | None = None
    provider: str | None = None
    model_path: str | None = None
    report_path: str | None = None
    error: str | None = None
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    warnings: tuple[str, ...] = ()
    comparison: Mapping[str, float | None] = field(default_factory=dict)
    user_metrics: Mapping[str, float] = field(default_factory=dict)
    size_bytes: int | None = None
    passed: bool | None = None
    gate_reason: str | None = None

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy with labels, else top-1 agreement with the dense model."""
        return self.top1 if self.top1 is not None else self.agreement

    def to_dict(self) -> dict:
        """JSON form (compressions derived from the sparsities; infinite is None)."""
        return {
            "method": self.method,
            "score": self.score,
            "allocation": self.allocation,
            "sparsity": self.sparsity,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
            "direct_compression": _finite_compression(self.direct_sparsity),
            "effective_compression": _finite_compression(self.effective_sparsity),
            "macs": self.macs,
            "nonzero_macs": self.nonzero_macs,
            "top1": self.top1,
            "agreement": self.agreement,
            "provider": self.provider,
            "model_path": self.model_path,
            "report_path": self.report_path,
            "error": self.error,
            "speedup": self.speedup,
            "speedup_low": self.speedup_low,
            "speedup_high": self.speedup_high,
            "warnings": list(self.warnings),
            "comparison": dict(self.comparison),
            "user_metrics": dict(self.user_metrics),
            "size_bytes": self.size_bytes,
            "passed": self.passed,
            "gate_reason": self.gate_reason,
        }


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The dense model's validation and every run, in the order they were asked for.

    Attributes:
        model: the dense model's file name.
        dense: its validation.
        runs: every run.
        classes: the class count the model's first output declares (``None``: not fixed);
            chance accuracy is ``1 / classes``.
        gated: whether the sweep had a gate (``max_accuracy_drop``, ``min_agreement``).
        class_axis: the class axis accuracy and agreement were per position on (``validate``).
    """

    model: str
    dense: ValidationResult
    runs: tuple[SweepRun, ...]
    classes: int | None = None
    gated: bool = False
    class_axis: int | None = None

    @property
    def failed(self) -> tuple[SweepRun, ...]:
        """Runs that did not complete."""
        return tuple(run for run in self.runs if run.error is not None)

    @property
    def front_macs(self) -> tuple[bool, ...]:
        """Per run: on the Pareto front of accuracy vs MACs by nonzero weights."""
        return pareto_front([accuracy_vs_cost(r.accuracy, r.nonzero_macs) for r in self.runs])

    @property
    def front_speedup(self) -> tuple[bool, ...]:
        """Per run: on the Pareto front of accuracy vs speedup over the dense model."""
        return pareto_front([accuracy_vs_gain(r.accuracy, r.speedup) for r in self.runs])

    @property
    def recommended(self) -> SweepRun | None:
        """The most compressed run that passed the gate (``onnxprune.choice.recommend``)."""
        index = recommend(
            [Candidate(r.method, bool(r.passed), r.nonzero_macs, r.size_bytes) for r in self.runs]
        )
        return None if index is None else self.runs[index]

    def to_dict(self) -> dict:
        """The sweep document (``"kind": "sweep"``): fronts per run, the recommended run."""
        runs = [
            {**run.to_dict(), "front_macs": macs, "front_speedup": speed}
            for run, macs, speed in zip(self.runs, self.front_macs, self.front_speedup, strict=True)
        ]
        best = self.recommended
        return {
            "kind": "sweep",
            "model": self.model,
            "dense": self.dense.to_dict(),
            "runs": runs,
            "classes": self.classes,
            "gated": self.gated,
            "recommended": None if best is None else best.model_path,
            "class_axis": self.class_axis,
        }


def parse_methods(text: str | Sequence[str]) -> list[tuple[str, str]]:
    """``"magnitude/global,lamp/erk"`` -> ``[("magnitude", "global"), ("lamp", "erk")]``.

    Raises:
        InvalidOptionError: a method that is not ``SCORE/ALLOCATION`` with registered names.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    methods = []
    for item in (i.strip() for i in items):
        score, sep, allocation = item.partition("/")
        if not sep or not score or not allocation:
            raise InvalidOptionError(f"method {item!r} must look like SCORE/ALLOCATION")
        get_score(score)
        get_allocation(allocation)
        methods.append((score, allocation))
    if not methods:
        raise InvalidOptionError("give at least one method, e.g. magnitude/global")
    return methods


def parse_sparsities(text: str | Sequence[float]) -> list[float]:
    """``"0.5,0.9"`` -> ``[0.5, 0.9]``, each checked to be in [0, 1).

    Raises:
        InvalidOptionError: a value that is not a number in [0, 1).
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value < 1.0:
            raise InvalidOptionError(f"sparsity {item!r} must be a number in [0, 1)")
        values.append(value)
    if not values:
        raise InvalidOptionError("give at least one sparsity")
    return values


def sweep(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sparsities: Sequence[float],
    methods: Sequence[tuple[str, str]],
    jobs: int = 1,
    effective: bool = False,
    level: str = "channel",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    provider: str = "auto",
    batch_size: int = 64,
    seed: int = 0,
    sensitivity: str | os.PathLike | None = None,
    min_time: float = MIN_TIME,
    min_runs: int = MIN_RUNS,
    threads: int = THREADS,
    metric: str | UserMetric | None = None,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    class_axis: int | None = None,
    on_done: Callable[[SweepRun], None] | None = None,
) -> SweepResult:
    """Prune ``model`` with every method at every sparsity, validate each against the dense one.

    Args:
        model: path of the dense model.
        data: evaluation ``.npz`` (arrays named after the inputs, plus ``labels``).
        out: folder for the pruned models, masks, reports and ``sweep.json``.
        sparsities: targets in [0, 1) (effective sparsity with ``effective``).
        methods: ``(score, allocation)`` pairs.
        jobs: worker processes; 1 runs everything in this process.
        effective: the targets are effective sparsities.
        level: reachability level of the reports.
        input_shapes: fixed shapes for inputs with symbolic dimensions (``onnxprune.prune``).
        dims: sizes of symbolic dimensions by name (``--dim batch=1``).
        provider: ONNX Runtime provider for validation (``auto``, ``cpu``, ``cuda``).
        batch_size: validation batch size.
        seed: seed of random scores.
        sensitivity: the ``sensitivity.json`` of ``onnxprune sensitivity`` on this model, read
            by the methods whose allocation is ``sensitivity`` (and only given with them).
        min_time: seconds each run's timing lasts at least (see ``validate``).
        min_runs: timed batches of each run, and of the dense model alongside, at least.
        threads: ONNX Runtime intra-op threads of every session timed.
        metric: a user metric (``module:function``, see ``onnxprune.user_metrics``) measured on
            the dense model and on every run (a callable needs ``jobs`` 1 or to be picklable).
        max_accuracy_drop: gate of every run: dense top-1 minus the run's at most this (needs
            labels); the recommended run is the most compressed one that passes.
        min_agreement: gate of every run: top-1 agreement with the dense model at least this.
        class_axis: the axis of the classes: accuracy and agreement per position (token,
            pixel), as ``validate`` measures them with it.
        on_done: called with each finished run (progress bars).

    Returns:
        A ``SweepResult``; ``sweep.json`` in ``out`` holds its ``to_dict()``.

    Raises:
        InvalidModelError, DatasetError, InvalidOptionError: for bad input found before any run.
    """
    if jobs < 1:
        raise InvalidOptionError(f"jobs={jobs} must be at least 1")
    check_timing(min_time, min_runs, threads, CONFIDENCE)
    check_class_axis(class_axis)
    gate = gate_options(max_accuracy_drop, min_agreement)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InvalidOptionError(f"--out {folder} is a file, not a folder")
    source = Path(model)
    load_model(source)  # bad models fail here, once, not in every run
    if metric is not None:
        load_metric(metric)  # and a metric that cannot be imported
    dataset = load_dataset(data, source, class_axis=class_axis)
    if max_accuracy_drop is not None and dataset.labels is None:
        raise InvalidOptionError("--max-accuracy-drop needs labels; the data has no 'labels'")
    curves = _sensitivity_for(source, methods, sensitivity)
    make_folder(folder)
    tasks = [
        _Task(
            str(source),
            str(data),
            str(folder),
            s,
            a,
            t,
            effective,
            level,
            provider,
            batch_size,
            seed,
            curves if get_allocation(a).name == "sensitivity" else None,
            input_shapes=dict(input_shapes or {}),
            dims=dict(dims or {}),
            min_time=min_time,
            min_runs=min_runs,
            threads=threads,
            metric=metric,
            gate=gate,
            class_axis=class_axis,
        )
        for s, a in methods
        for t in sparsities
    ]
    written = [path for task in tasks for path in dataclasses.astuple(task.files)]
    reads = {"data": data, "sensitivity": sensitivity}
    check_outputs(source, *written, folder / "sweep.json", reads=reads)
    started = time.time()  # before the dense run: the clock of file times is coarse
    timing = {"min_time": min_time, "min_runs": min_runs, "threads": threads}
    labelled = None if dataset.labels is None else class_axis  # alone, it reads the labels only
    dense = validate(
        source, dataset, provider=provider, batch_size=batch_size, metric=metric,
        class_axis=labelled, **timing,
    )  # fmt: skip
    runs = _run_tasks(tasks, jobs, on_done, started)
    classes = declared_classes(load_model(source), class_axis)
    result = SweepResult(source.name, dense, tuple(runs), classes, bool(gate), class_axis)
    write_text_atomic(folder / "sweep.json", json.dumps(result.to_dict(), indent=2))
    return result


def _sensitivity_for(
    model: Path, methods: Sequence[tuple[str, str]], sensitivity: str | os.PathLike | None
) -> str | None:
    """The sensitivity file's path when a method reads it, checked against the model once.

    Raises:
        InvalidOptionError: a method with allocation ``sensitivity`` and no file, a file and no
            such method, or a file that was not measured on this model.
    """
    from onnxprune.pruners.allocations.sensitivity import check_curves, read_curves
    from onnxprune.sparsity import analyze

    readers = [f"{s}/{a}" for s, a in methods if get_allocation(a).name == "sensitivity"]
    if sensitivity is None:
        if readers:
            raise InvalidOptionError(f"method {readers[0]} needs --sensitivity")
        return None
    if not readers:
        raise InvalidOptionError(
            "--sensitivity is read by methods with allocation sensitivity only"
        )
    layers = {layer.name: layer.params for layer in analyze(model, units=False).layers}
    check_curves(read_curves(sensitivity), layers)
    return str(sensitivity)


def _run_tasks(
    tasks: Sequence[_Task],
    jobs: int,
    on_done: Callable[[SweepRun], None] | None,
    started: float,
) -> list[SweepRun]:
    """Every run, here (``jobs`` 1) or in worker processes; stopped midway, none half written."""
    done = []

    def finish(run: SweepRun) -> SweepRun:
        done.append(run)
        if on_done is not None:
            on_done(run)
        return run

    try:
        if jobs == 1:
            return [finish(task.run()) for task in tasks]
        return run_in_processes(_Task.run, tasks, jobs=jobs, crashed=_Task.failed, on_done=finish)
    except BaseException:  # stopped (Ctrl-C, SIGTERM): the finished runs stay, whole
        _discard_unfinished(tasks, done, started)
        raise


def _discard_unfinished(tasks: Sequence[_Task], done: Sequence[SweepRun], since: float) -> None:
    """Remove every file a run not in ``done`` wrote from ``since`` on, and its temporaries.

    A run stopped midway (this process interrupted, or its worker killed) may have written its
    model and masks but not its report, or left temporaries behind: its whole set goes, so what
    stays is finished runs and files of earlier sweeps, never a mixed set. Workers are dead by
    now (``run_in_processes`` kills them before its error goes on).
    """
    finished = {(run.score, run.allocation, run.sparsity) for run in done}
    now = time.time()
    for task in tasks:
        if (task.score, task.allocation, task.sparsity) in finished:
            continue
        files = task.files
        paths = [*dataclasses.astuple(files), *data_files(files.model)]
        for path in paths:
            remove_stale_temporaries(path, before=now)
        if any(path.exists() and path.stat().st_mtime >= since for path in paths):
            files.remove()


@dataclass(frozen=True, slots=True)
class _Task:
    """Everything one run needs, picklable for worker processes."""

    model: str
    data: str
    out: str
    score: str
    allocation: str
    sparsity: float
    effective: bool
    level: str
    provider: str
    batch_size: int
    seed: int
    sensitivity: str | None = None  # the curves, for allocation sensitivity
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    min_time: float = MIN_TIME
    min_runs: int = MIN_RUNS
    threads: int = THREADS
    metric: str | UserMetric | None = None
    gate: dict[str, float] = field(default_factory=dict)
    class_axis: int | None = None

    def failed(self, error: str) -> SweepRun:
        """The run as asked, failed with ``error``."""
        method = f"{self.score}/{self.allocation}"
        return SweepRun(method, self.score, self.allocation, self.sparsity, error=error)

    @property
    def files(self) -> PrunedFiles:
        """``<score>_<allocation>_<sparsity>.onnx`` and its masks and report in the folder."""
        stem = f"{self.score}_{self.allocation}_{self.sparsity:g}".replace("+", "plus")
        return PrunedFiles.beside(Path(self.out) / f"{stem}.onnx")

    def run(self) -> SweepRun:
        method = f"{self.score}/{self.allocation}"
        asked = SweepRun(method, self.score, self.allocation, self.sparsity)
        try:
            result = prune(
                self.model,
                sparsity=self.sparsity,
                score=self.score,
                allocation=self.allocation,
                effective=self.effective,
                level=self.level,
                input_shapes=self.input_shapes,
                dims=self.dims,
                seed=self.seed,
                calibration=_calibration(self.score, self.data, self.model),
                sensitivity=self.sensitivity,
            )
            files = save_pruned(result, self.files.model)
            checked = validate(
                result.model,
                self.data,
                baseline=self.model,
                provider=self.provider,
                batch_size=self.batch_size,
                min_time=self.min_time,
                min_runs=self.min_runs,
                threads=self.threads,
                metric=self.metric,
                class_axis=self.class_axis,
                **self.gate,
            )
        except OnnxpruneError as e:  # one run's bad option must not stop the others
            return dataclasses.replace(asked, error=f"{type(e).__name__}: {e}")
        return dataclasses.replace(
            asked,
            direct_sparsity=result.report.direct_sparsity,
            effective_sparsity=result.report.effective_sparsity,
            macs=result.report.macs,
            nonzero_macs=result.report.nonzero_macs,
            top1=checked.top1,
            agreement=checked.agreement,
            provider=checked.provider,
            model_path=files.model.name,
            report_path=files.report.name,
            speedup=checked.speedup,
            speedup_low=checked.speedup_low,
            speedup_high=checked.speedup_high,
            warnings=checked.warnings,
            comparison=worst(checked.outputs),
            user_metrics=checked.user_metrics,
            size_bytes=files.model.stat().st_size,
            passed=None if checked.gate is None else checked.gate.passed,
            gate_reason=None if checked.gate is None else checked.gate.reason,
        )


def _calibration(score: str, data: str, model: str) -> dict | None:
    """The evaluation inputs, for a score that reads calibration data; else ``None``."""
    from onnxprune.pruners.registry import get_score

    return load_dataset(data, model).inputs if get_score(score).calibrated else None


def _finite_compression(sparsity: float | None) -> float | None:
    if sparsity is None:
        return None
    value = compression(sparsity)
    return None if value == float("inf") else value


def format_sweep(result: SweepResult) -> str:
    """The sweep as a text table, then the recommended run.

    One row per run: method, target, direct and effective sparsity, MACs by nonzero weights,
    file size, top-1 accuracy, agreement and cosine similarity (the worst output's) with the
    dense model, speedup over it with its 95% interval, the gate's verdict, which Pareto fronts
    hold the run (``M``: accuracy vs MACs, ``S``: accuracy vs speedup), and a column per value
    of the user metric; failed runs show their error.
    """
    dense = result.dense
    names = list(dict.fromkeys(k for r in (dense, *result.runs) for k in r.user_metrics))
    header = (
        *("method", "target", "direct", "effective", "nonzero MACs", "size", "top-1"),
        *("agreement", "cosine", "speedup (95% CI)", "gate", "front", *names),
    )
    dense_macs = next((run.macs for run in result.runs if run.error is None), None)
    user = _values(dense.user_metrics, names)
    dense_row = ("dense", "-", "-", "-", short(dense_macs), "-", _pct(dense.top1))
    rows = [(*dense_row, *["-"] * 5, *user)]
    fronts = zip(result.front_macs, result.front_speedup, strict=True)
    for run, (on_macs, on_speedup) in zip(result.runs, fronts, strict=True):
        if run.error is not None:
            failed = (run.method, f"{run.sparsity:g}", "failed", run.error)
            rows.append((*failed, *[""] * (8 + len(names))))
            continue
        cosine = run.comparison.get("cosine")
        rows.append(
            (
                run.method,
                f"{run.sparsity:g}",
                _pct(run.direct_sparsity),
                _pct(run.effective_sparsity),
                short(run.nonzero_macs),
                format_size(run.size_bytes),
                _pct(run.top1),
                _pct(run.agreement),
                "n/a" if cosine is None else f"{cosine:.4f}",
                _speedup(run),
                {None: "-", True: "passed", False: "FAILED"}[run.passed],
                " ".join(mark for mark, on in (("M", on_macs), ("S", on_speedup)) if on),
                *_values(run.user_metrics, names),
            )
        )
    lines = text_table(header, rows)
    axis = "" if result.class_axis is None else f"   class axis: {result.class_axis} (per position)"
    lines.append(f"provider: {dense.provider}   samples: {dense.samples}{axis}")
    lines.append("front: M on the Pareto front of accuracy vs MACs, S of accuracy vs speedup")
    lines.append(f"recommended: {recommendation(result)}")
    return "\n".join(lines)


def recommendation(result: SweepResult) -> str:
    """The recommended run in one line, or why there is none."""
    if not result.gated:
        return "none: no gate was set (--max-accuracy-drop, --min-agreement)"
    best = result.recommended
    if best is None:
        return "none passes the gate"
    return (
        f"{best.method} at {best.sparsity:g} ({best.model_path}): {short(best.nonzero_macs)} "
        f"MACs by nonzero weights, {format_size(best.size_bytes)}, the most compressed run "
        "that passes the gate"
    )


def sweep_warnings(result: SweepResult) -> list[str]:
    """The timing warnings of the dense model and of every run, each text once, named by run."""
    runs = [(f"{run.method} at {run.sparsity:g}", run.warnings) for run in result.runs]
    return named_warnings([("dense model", result.dense.warnings), *runs])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _speedup(run: SweepRun) -> str:
    """``1.52x (1.40-1.65)``: the speedup and its interval; ``n/a`` when it was not measured."""
    if run.speedup is None or run.speedup_low is None or run.speedup_high is None:
        return "n/a"
    return f"{run.speedup:.2f}x ({run.speedup_low:.2f}-{run.speedup_high:.2f})"


def _values(values: Mapping[str, float], names: Sequence[str]) -> list[str]:
    return ["n/a" if values.get(name) is None else f"{values[name]:.6g}" for name in names]
