"""One model of a batch: the job a worker runs, its result, and whether it is already done.

``run_job`` is the one function every executor ships (a local process pool, Ray); it never raises
for the model's sake: a corrupt file, a bad option, running out of memory under the worker's
limit all become a failed ``ItemResult``. Outputs are written atomically, the marker
``<stem>.batch.json`` last: a model is done when its marker has the options' fingerprint and its
outputs are newer than its inputs (the model, its external data, its evaluation data).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from onnxprune.batch.items import MARKER_SUFFIX
from onnxprune.errors import InvalidModelError, OnnxpruneError
from onnxprune.metrics import worst
from onnxprune.model import (
    DEFAULT_MAX_BYTES,
    check_model,
    external_span,
    parse_checked,
    write_text_atomic,
)
from onnxprune.options import PruneOptions, reads_calibration
from onnxprune.outputs import PrunedFiles
from onnxprune.validation import load_dataset, validate
from onnxprune.verbs import prune

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None


@dataclass(frozen=True, slots=True)
class Job:
    """Everything one model needs, picklable for worker processes and Ray tasks.

    Paths are absolute strings, so a worker with another working directory finds them;
    ``name`` and ``output_name`` are what results show (relative to the source and to OUT).
    """

    model: str
    name: str
    output: str
    output_name: str
    data: str | None
    options: PruneOptions
    fingerprint: str
    memory_limit: int | None = None
    provider: str = "auto"
    batch_size: int = 64
    max_bytes: int = DEFAULT_MAX_BYTES
    sensitivity: str | None = None
    metric: str | None = None
    class_axis: int | None = None

    @property
    def files(self) -> PrunedFiles:
        """The pruned model, masks and report this job writes."""
        return PrunedFiles.beside(Path(self.output))

    @property
    def marker(self) -> Path:
        """``<stem>.batch.json``: this job's result and fingerprint, written last."""
        return Path(self.output).with_suffix(MARKER_SUFFIX)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What happened to one model; one JSON line of ``batch.jsonl``.

    Attributes:
        model: the model's path relative to the batch's root.
        status: ``"ok"``, ``"failed"`` or ``"skipped"`` (done before with the same options).
        output: the pruned model's path relative to the output folder.
        streamed: whether it was pruned tensor by tensor (``None`` when it failed before).
        target: the sparsity asked for.
        direct_sparsity: direct sparsity of the pruned model.
        effective_sparsity: effective sparsity of the pruned model.
        accuracy: top-1 accuracy of the pruned model on its evaluation data (with labels).
        baseline_accuracy: the same for the model before pruning.
        agreement: fraction of top-1 classes that agree with the model before pruning.
        macs: multiply-accumulates of the pruned model (``onnxprune.macs``; ``None`` when a
            shape is unknown).
        nonzero_macs: those by nonzero weights.
        baseline_macs: the dense multiply-accumulates of the model before pruning.
        size_bytes: bytes of the pruned model file.
        comparison: each comparison with the model before pruning (``onnxprune.metrics``), at
            its worst over the outputs.
        user_metrics: the values of the batch's user metric (``metric``) on the pruned model.
        seconds: wall time of the run (of the original run, for a skipped model).
        error: one line, when it failed.
        warnings: the pruner's warnings (layer collapse, skipped layers).
        class_axis: the class axis accuracy and agreement were per position on (``validate``).
    """

    model: str
    status: str
    output: str
    streamed: bool | None = None
    target: float | None = None
    direct_sparsity: float | None = None
    effective_sparsity: float | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    agreement: float | None = None
    macs: int | None = None
    nonzero_macs: int | None = None
    baseline_macs: int | None = None
    size_bytes: int | None = None
    seconds: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    comparison: Mapping[str, float | None] = field(default_factory=dict)
    user_metrics: Mapping[str, float] = field(default_factory=dict)
    class_axis: int | None = None

    def to_dict(self) -> dict:
        """JSON form, every field."""
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data

    @staticmethod
    def from_dict(data: dict) -> ItemResult:
        """The result a ``to_dict`` wrote."""
        return ItemResult(**{**data, "warnings": tuple(data.get("warnings") or ())})


def run_job(job: Job) -> ItemResult:
    """Prune (and evaluate) one model; every failure becomes a failed result, never an error."""
    began = time.perf_counter()
    result = ItemResult(job.name, "failed", job.output_name, target=job.options.sparsity)
    try:
        job.marker.unlink(missing_ok=True)  # a failed rerun must not leave an old "done"
        with memory_limit(job.memory_limit):
            result, inputs = _prune(job, result)
        if job.data is not None:
            # CUDA reserves far more address space than it uses: under the limit its session
            # would not start, and validation would quietly run on the CPU.
            with memory_limit(job.memory_limit if job.provider == "cpu" else None):
                result = _evaluate(job, result)
            inputs.append(str(Path(job.data).resolve()))
        result = replace(result, seconds=time.perf_counter() - began)
        document = {"fingerprint": job.fingerprint, "inputs": inputs, "result": result.to_dict()}
        write_text_atomic(job.marker, json.dumps(document, indent=2))
    except MemoryError:
        result = replace(result, error=_out_of_memory(job))
    except InvalidModelError as e:  # protobuf reports a failed allocation as a bad message
        error = _out_of_memory(job) if _parses_unlimited(job) else f"{type(e).__name__}: {e}"
        result = replace(result, error=error)
    except OnnxpruneError as e:
        result = replace(result, error=f"{type(e).__name__}: {e}")
    except Exception as e:  # a bug on one model must not stop the others
        result = replace(result, error=f"InternalError: {type(e).__name__}: {e}")
    if result.error is not None:
        result = replace(result, status="failed", seconds=time.perf_counter() - began)
    return result


def _out_of_memory(job: Job) -> str:
    limit = "no limit" if job.memory_limit is None else f"limit {job.memory_limit:,} bytes"
    return f"MemoryError: out of memory in the worker ({limit})"


def _parses_unlimited(job: Job) -> bool:
    """Whether the model parses and checks once the memory limit is lifted (it lacked memory)."""
    if job.memory_limit is None:
        return False
    try:
        check_model(parse_checked(Path(job.model), max_bytes=job.max_bytes)[0])
    except (OnnxpruneError, MemoryError):
        return False
    return True


def crashed(job: Job, reason: str) -> ItemResult:
    """The result of a job whose worker died."""
    asked = ItemResult(job.name, "failed", job.output_name, target=job.options.sparsity)
    return replace(asked, error=reason)


def _prune(job: Job, asked: ItemResult) -> tuple[ItemResult, list[str]]:
    """Prune and write (``onnxprune.prune`` chooses the path).

    Returns:
        The result, and the input files the outputs depend on.
    """
    options = job.options
    files = job.files
    files.model.parent.mkdir(parents=True, exist_ok=True)
    calibration = None
    if job.data is not None and reads_calibration(options):
        calibration = load_dataset(job.data, job.model).inputs
    result = prune(
        job.model,
        options,
        calibration=calibration,
        sensitivity=job.sensitivity,
        output=files.model,
        masks_out=None if options.structured else files.masks,
        report_out=files.report,
        max_bytes=job.max_bytes,
    )
    report = result.report
    done = replace(
        asked,
        status="ok",
        streamed=result.streamed,
        direct_sparsity=None if report is None else report.direct_sparsity,
        effective_sparsity=None if report is None else report.effective_sparsity,
        macs=result.cost.macs,
        nonzero_macs=result.cost.nonzero_macs,
        baseline_macs=result.dense_macs_before,
        size_bytes=files.model.stat().st_size,
        warnings=tuple(result.warnings),
    )
    read = [job.model, *([job.sensitivity] if job.sensitivity else [])]
    return done, [str(Path(path).resolve()) for path in read] + _external_files(job)


def _evaluate(job: Job, done: ItemResult) -> ItemResult:
    """The pruned model against the model before pruning on the job's evaluation data."""
    checked = validate(
        job.files.model,
        job.data,
        baseline=job.model,
        provider=job.provider,
        batch_size=job.batch_size,
        min_time=0.0,  # a batch reports accuracy and agreement, not latency: each batch once
        min_runs=1,
        metric=job.metric,
        class_axis=job.class_axis,
    )
    return replace(
        done,
        accuracy=checked.top1,
        baseline_accuracy=checked.baseline_top1,
        agreement=checked.agreement,
        comparison=worst(checked.outputs),
        user_metrics=checked.user_metrics,
        class_axis=checked.class_axis,
    )


def _external_files(job: Job) -> list[str]:
    """The external data files of the model (the parsed model is let go on return)."""
    _, external, base = parse_checked(Path(job.model), max_bytes=job.max_bytes)
    return sorted({str(external_span(t, base)[0]) for t in external})


def finished(job: Job) -> ItemResult | None:
    """The stored result when ``job`` was done with the same fingerprint and is up to date.

    Up to date: every output exists and none is older than any input the run recorded (the
    model, its external data files, its evaluation data).
    """
    try:
        document = json.loads(job.marker.read_text(encoding="utf-8"))
        if document.get("fingerprint") != job.fingerprint:
            return None
        files = job.files
        outputs = [files.model, files.report] + ([] if job.options.structured else [files.masks])
        made = min(p.stat().st_mtime_ns for p in outputs)
        inputs = {job.model, *document["inputs"], *([job.data] if job.data else [])}
        if any(Path(p).stat().st_mtime_ns > made for p in inputs):
            return None
        result = ItemResult.from_dict(document["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return replace(result, status="skipped") if result.status == "ok" else None


@contextmanager
def memory_limit(limit: int | None) -> Iterator[None]:
    """Let this process add at most ``limit`` bytes of address space while inside.

    The soft ``RLIMIT_AS`` is set to the current address space plus ``limit`` (never above the
    hard limit) and restored on the way out, so a reused worker (Ray's) keeps its own limit.
    Allocations beyond it raise ``MemoryError`` in this process instead of waking the kernel's
    out-of-memory killer. No-op where ``resource`` or ``/proc`` is missing.
    """
    size = _address_space()
    if limit is None or resource is None or size is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = size + limit if hard == resource.RLIM_INFINITY else min(size + limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int | None:
    """The address space of this process in bytes (``VmSize``), or ``None`` if unknown."""
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
