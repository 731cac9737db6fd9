"""Validation on ONNX Runtime: accuracy, agreement with a baseline, output error, latency, gate.

A dataset is an ``.npz`` file whose arrays are named after the model's graph inputs (samples along
axis 0), plus optional integer ``labels`` of shape ``[N]``; other arrays are ignored. The model's
first output is read as scores ``[N, C]`` (logits or probabilities; trailing axes are flattened
into ``C``).

The model runs in batches on the provider ``create_session`` starts (CUDA when it works, else the
CPU, unless asked otherwise). ``warmup`` untimed runs of the first batch come first; then every
batch is timed once. A baseline, when given, gets its own ``warmup`` runs (model and baseline
warm up in turn) and is timed on the same batches, so the result reports its latency and the
speedup ``baseline p50 / model p50``.

Model and baseline runs are interleaved batch by batch, and the order alternates: on even batches
the model runs first, on odd ones the baseline does. Timing all of one model and then all of the
other would let drift (CPU frequency and heat, other load on the machine) favour one side; a
fixed order within each batch would always hand the second run the batch's inputs already in
cache and the first run's ONNX Runtime threads still spinning on the same cores. Alternating
gives each side the first and the second place equally often, so these effects fall on both.
The gate is a value (``GateResult``), never an exception: the CLI exits 3 when it fails.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import DatasetError, InvalidModelError, InvalidOptionError
from onnxprune.feeds import batches, check_feeds, fixed_batch_size, graph_inputs, session_for
from onnxprune.model import ModelSource, load_model
from onnxprune.pruners.masks import UNREADABLE_NPZ
from onnxprune.report import GateResult, ValidationResult
from onnxprune.runtime import create_session, run_session

LABELS = "labels"
"""Name of the optional array of integer class labels in a dataset."""

_TOLERANCE = 1e-9  # gate comparisons of fractions: 0.97 - 0.96 is 0.010000000000000009


@dataclass(frozen=True, slots=True)
class Dataset:
    """Evaluation data checked against a model's inputs.

    Attributes:
        inputs: arrays keyed by graph input name, samples along axis 0.
        labels: integer class of each sample, shape ``[samples]``, or ``None``.
        samples: number of samples.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    samples: int


def load_dataset(path: str | os.PathLike, model: ModelSource) -> Dataset:
    """Read an ``.npz`` dataset and check it against ``model``'s graph inputs and classes.

    Args:
        path: the ``.npz`` file: one array per graph input, optional ``labels``.
        model: a path, serialized bytes or ``onnx.ModelProto`` (see ``load_model``).

    Returns:
        The arrays the model needs and the labels, if any.

    Raises:
        DatasetError: a missing or unreadable file, a missing input, a wrong dtype (never
            cast), rank or fixed dimension, different sample counts, no samples, or labels that
            are not integers of shape ``[N]`` within the model's classes.
        InvalidModelError: the model cannot be read or has no inputs to feed.

    Example:
        >>> import numpy as np, tempfile, os
        >>> from onnx import helper, TensorProto
        >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
        >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(path, x=np.zeros((4, 3), np.float32), labels=np.array([0, 1, 2, 0]))
        >>> load_dataset(path, m).samples
        4
    """
    proto = load_model(model)
    inputs = _needed_inputs(proto)
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path.name}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, Mapping):
            raise DatasetError(f"dataset {path.name} is one .npy array, not an .npz archive")
        with data:
            feeds = check_feeds(proto, inputs, data, "dataset")
            labels = np.asarray(data[LABELS]) if LABELS in data else None
    except UNREADABLE_NPZ as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"dataset {path.name} is not a readable .npz: {reason}") from e
    samples = next(iter(feeds.values())).shape[0]
    _check_labels(labels, samples, _declared_classes(proto))
    return Dataset(inputs=feeds, labels=labels, samples=samples)


def validate(
    model: ModelSource,
    data: str | os.PathLike | Dataset,
    *,
    baseline: ModelSource | None = None,
    provider: str = "auto",
    batch_size: int = 64,
    warmup: int = 3,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
) -> ValidationResult:
    """Run ``model`` (and ``baseline``) on ``data`` with ONNX Runtime and measure both.

    Args:
        model: a path, serialized bytes or ``onnx.ModelProto``.
        data: an ``.npz`` path or a ``Dataset`` (see ``load_dataset``).
        baseline: the model to compare with (usually the unpruned one), same kinds as ``model``.
        provider: ``"auto"``, ``"cuda"`` or ``"cpu"`` (see ``create_session``).
        batch_size: samples per run; a model whose input fixes the batch size uses that (the
            last batch is padded by repeating its last sample, and the padding is discarded).
        warmup: untimed runs of the first batch before timing, for the model and again for
            the baseline.
        max_accuracy_drop: gate: baseline top-1 minus model top-1 must be at most this
            (needs labels and a baseline).
        min_agreement: gate: the fraction of top-1 classes that agree with the baseline must
            be at least this (needs a baseline).

    Returns:
        A ``ValidationResult``; its ``gate`` is ``None`` when no gate option was given, its
        baseline latencies and ``speedup`` are ``None`` without a baseline.

    Raises:
        InvalidOptionError: a bad option, a gate option without the baseline or labels it
            needs, or a provider that does not start.
        InvalidModelError: a model cannot be read, or its first output is not ``[N, ...]``.
        DatasetError: the data does not fit the model (see ``load_dataset``).
    """
    _check_options(batch_size, warmup, max_accuracy_drop, min_agreement)
    if baseline is None and (max_accuracy_drop is not None or min_agreement is not None):
        raise InvalidOptionError("the gate compares with a baseline; give --baseline too")
    candidate = load_model(model)
    dataset = (
        _recheck(data, candidate) if isinstance(data, Dataset) else load_dataset(data, candidate)
    )
    if max_accuracy_drop is not None and dataset.labels is None:
        raise InvalidOptionError("max_accuracy_drop needs labels; the dataset has no 'labels'")
    runner = _Runner.start(model, candidate, dataset, provider)
    reference = None
    if baseline is not None:
        reference = _Runner.start(baseline, load_model(baseline), dataset, provider)
    step = runner.fixed or int(batch_size)
    tally = _Tally()
    times = _measure(runner, reference, dataset, step, int(warmup), tally)
    return _result(runner, reference, dataset, step, tally, times, max_accuracy_drop, min_agreement)


def _measure(
    runner: _Runner,
    reference: _Runner | None,
    dataset: Dataset,
    step: int,
    warmup: int,
    tally: _Tally,
) -> tuple[list[float], list[float] | None]:
    """Seconds of every batch of the model and of the baseline; the outputs go into ``tally``.

    Each side first runs its first batch ``warmup`` times, untimed. Then, batch by batch, both
    run on the same samples, the model first on even batches and the baseline first on odd ones
    (see the module docstring).
    """
    sides = (runner,) if reference is None else (runner, reference)
    firsts = [side.batch(0, step) for side in sides]
    for _ in range(warmup):
        for side, first in zip(sides, firsts, strict=True):
            side.run(first)
    times: list[list[float]] = [[] for _ in sides]
    for index, start in enumerate(range(0, dataset.samples, step)):
        outs: list[np.ndarray | None] = [None] * len(sides)
        order = range(len(sides)) if index % 2 == 0 else reversed(range(len(sides)))
        for i in order:
            feeds = sides[i].batch(start, start + step)
            began = time.perf_counter()
            outs[i] = sides[i].run(feeds)
            times[i].append(time.perf_counter() - began)
        labels = None if dataset.labels is None else dataset.labels[start : start + step]
        tally.add(outs[0], outs[1] if reference is not None else None, labels)
    return times[0], times[1] if reference is not None else None


def _recheck(dataset: Dataset, model: onnx.ModelProto) -> Dataset:
    """A ``Dataset`` built by the caller, checked against ``model`` as ``load_dataset`` would."""
    feeds = check_feeds(model, _needed_inputs(model), dataset.inputs, "dataset")
    samples = next(iter(feeds.values())).shape[0]
    if dataset.samples != samples:
        raise DatasetError(f"Dataset.samples={dataset.samples} but the inputs hold {samples}")
    _check_labels(dataset.labels, samples, _declared_classes(model))
    return dataset


def _check_options(
    batch_size: int, warmup: int, max_accuracy_drop: float | None, min_agreement: float | None
) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise InvalidOptionError(f"batch_size={batch_size!r} must be a positive integer")
    if isinstance(warmup, bool) or not isinstance(warmup, Integral) or warmup < 0:
        raise InvalidOptionError(f"warmup={warmup!r} must be an integer >= 0")
    for name, value in (("max_accuracy_drop", max_accuracy_drop), ("min_agreement", min_agreement)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidOptionError(f"{name}={value!r} must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class _Runner:
    """One model's session, its first output and the dataset arrays it is fed."""

    name: str | None
    session: ort.InferenceSession
    provider: str
    output: str
    fixed: int | None
    feeds: dict[str, np.ndarray]

    @classmethod
    def start(
        cls, source: ModelSource, proto: onnx.ModelProto, dataset: Dataset, provider: str
    ) -> _Runner:
        feeds = check_feeds(proto, _needed_inputs(proto), dataset.inputs, "dataset")
        if not proto.graph.output:
            raise InvalidModelError("the model has no outputs")
        if isinstance(source, (str, os.PathLike)):  # ONNX Runtime reads external data itself
            session, name = create_session(source, provider)
        else:
            session, name = session_for(proto, provider)
        fixed = fixed_batch_size(proto, list(feeds))
        display = Path(source).name if isinstance(source, (str, os.PathLike)) else None
        return cls(display, session, name, proto.graph.output[0].name, fixed, feeds)

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: array[start:stop] for name, array in self.feeds.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for ``feeds``, in runs of the fixed batch size when there is one."""
        count = next(iter(feeds.values())).shape[0]
        step = self.fixed or count
        parts = []
        for chunk in batches(feeds, count, step):
            size = next(iter(chunk.values())).shape[0]
            if size < step:
                chunk = {
                    k: np.concatenate([v, np.repeat(v[-1:], step - size, 0)])
                    for k, v in chunk.items()
                }
            out = np.asarray(run_session(self.session, [self.output], chunk)[0])
            if out.ndim == 0 or out.shape[0] != step:
                raise InvalidModelError(
                    f"first output {self.output!r} has shape {list(out.shape)} for a batch of "
                    f"{step}; validation needs samples along axis 0"
                )
            parts.append(out[:size])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` grown to ``size`` samples by repeating its last sample."""
    return np.concatenate([array, np.repeat(array[-1:], size - array.shape[0], axis=0)])


@dataclass(slots=True)
class _Tally:
    """Running counts over batches; only one batch of outputs is held at a time."""

    classes: int | None = None
    correct: list[int] | None = None  # top-1, top-5, baseline top-1, baseline top-5
    agree: int = 0
    nonfinite: int = 0  # samples whose model output holds NaN or infinity
    max_abs: float = 0.0
    sum_abs: float = 0.0
    elements: int = 0

    def add(self, out: np.ndarray, ref: np.ndarray | None, labels: np.ndarray | None) -> None:
        if ref is not None and ref.shape != out.shape:
            raise InvalidModelError(
                f"the first outputs differ in shape: model {list(out.shape)}, baseline "
                f"{list(ref.shape)}"
            )
        if np.issubdtype(out.dtype, np.inexact):
            self.nonfinite += int((~np.isfinite(out.reshape(out.shape[0], -1))).any(axis=1).sum())
        if labels is None and ref is None:
            return
        scores = _scores(out)
        if self.classes is None:
            self.classes = scores.shape[1]
            self.correct = [0, 0, 0, 0]
        if labels is not None:
            _check_labels(labels, len(labels), self.classes)
            self.correct[0] += _top_k(scores, labels, 1)
            self.correct[1] += _top_k(scores, labels, 5)
        if ref is None:
            return
        ref_scores = _scores(ref)
        if labels is not None:
            self.correct[2] += _top_k(ref_scores, labels, 1)
            self.correct[3] += _top_k(ref_scores, labels, 5)
        same = scores.argmax(axis=1) == ref_scores.argmax(axis=1)
        self.agree += int((same & ~_has_nan(scores) & ~_has_nan(ref_scores)).sum())
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        self.max_abs = float(np.max([self.max_abs, diff.max(initial=0.0)]))  # NaN stays
        self.sum_abs += float(diff.sum())
        self.elements += diff.size


def _scores(out: np.ndarray) -> np.ndarray:
    if out.ndim < 2:
        raise InvalidModelError(
            f"the first output has shape {list(out.shape)}; accuracy and agreement need "
            "scores [N, C]"
        )
    return out.reshape(out.shape[0], -1)


def _top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Samples whose label has fewer than ``k`` classes scored strictly higher.

    A sample with a NaN score is wrong: NaN is neither above nor below, so it would pass.
    """
    if k == 1:
        return int(((scores.argmax(axis=1) == labels) & ~_has_nan(scores)).sum())
    own = np.take_along_axis(scores, labels[:, None].astype(np.intp), axis=1)
    higher = (scores > own).sum(axis=1)
    return int(((higher < k) & ~_has_nan(scores)).sum())


def _has_nan(scores: np.ndarray) -> np.ndarray:
    """Per sample, whether any of its scores is NaN."""
    if not np.issubdtype(scores.dtype, np.inexact):
        return np.zeros(scores.shape[0], bool)
    return np.isnan(scores).any(axis=1)


def _result(
    runner: _Runner,
    reference: _Runner | None,
    dataset: Dataset,
    step: int,
    tally: _Tally,
    times: tuple[list[float], list[float] | None],
    max_accuracy_drop: float | None,
    min_agreement: float | None,
) -> ValidationResult:
    n = dataset.samples
    labelled = dataset.labels is not None
    five = tally.classes is not None and tally.classes >= 5
    correct = tally.correct or [0, 0, 0, 0]
    compared = reference is not None
    top1 = correct[0] / n if labelled else None
    baseline_top1 = correct[2] / n if labelled and compared else None
    agreement = tally.agree / n if compared else None
    model_times, baseline_times = times
    p50, p95 = (float(t) for t in np.percentile(np.asarray(model_times) * 1e3, [50, 95]))
    baseline_p50 = baseline_p95 = speedup = None
    if baseline_times is not None:
        baseline_p50, baseline_p95 = (
            float(t) for t in np.percentile(np.asarray(baseline_times) * 1e3, [50, 95])
        )
        speedup = baseline_p50 / p50 if p50 > 0 else None
    return ValidationResult(
        model=runner.name,
        baseline=None if reference is None else reference.name,
        provider=runner.provider,
        baseline_provider=None if reference is None else reference.provider,
        samples=n,
        batch_size=step,
        top1=top1,
        top5=correct[1] / n if labelled and five else None,
        baseline_top1=baseline_top1,
        baseline_top5=correct[3] / n if labelled and five and compared else None,
        agreement=agreement,
        max_abs_diff=tally.max_abs if compared else None,
        mean_abs_diff=tally.sum_abs / tally.elements if compared and tally.elements else None,
        latency_ms_p50=p50,
        latency_ms_p95=p95,
        throughput=n / sum(model_times) if sum(model_times) > 0 else math.inf,
        baseline_latency_ms_p50=baseline_p50,
        baseline_latency_ms_p95=baseline_p95,
        speedup=speedup,
        gate=decide_gate(
            top1,
            baseline_top1,
            agreement,
            max_accuracy_drop,
            min_agreement,
            nonfinite=tally.nonfinite,
        ),
    )


def decide_gate(
    top1: float | None,
    baseline_top1: float | None,
    agreement: float | None,
    max_accuracy_drop: float | None,
    min_agreement: float | None,
    *,
    nonfinite: int = 0,
) -> GateResult | None:
    """The gate's decision, or ``None`` when neither threshold is given.

    A gate fails whatever its thresholds when the model's outputs were not finite on
    ``nonfinite`` samples: NaN or infinite scores make accuracy and agreement meaningless.

    Raises:
        InvalidOptionError: a threshold is given without the metric it checks.
    """
    if max_accuracy_drop is None and min_agreement is None:
        return None
    passed, failed = [], []
    if max_accuracy_drop is not None:
        if top1 is None or baseline_top1 is None:
            raise InvalidOptionError("max_accuracy_drop needs labels and a baseline")
        drop = baseline_top1 - top1
        moved = f"dropped {_points(drop)}" if drop >= 0 else f"rose {_points(-drop)}"
        text = f"top-1 {moved} ({baseline_top1:.2%} -> {top1:.2%})"
        if drop <= max_accuracy_drop + _TOLERANCE:
            passed.append(f"{text}, within the allowed {_points(max_accuracy_drop)}")
        else:
            failed.append(f"{text}, more than the allowed {_points(max_accuracy_drop)}")
    if min_agreement is not None:
        if agreement is None:
            raise InvalidOptionError("min_agreement needs a baseline")
        text = f"top-1 agreement with the baseline {agreement:.2%}"
        if agreement >= min_agreement - _TOLERANCE:
            passed.append(f"{text}, at least the required {min_agreement:.2%}")
        else:
            failed.append(f"{text}, less than the required {min_agreement:.2%}")
    if nonfinite:
        failed.append(f"the model's outputs hold NaN or infinity on {nonfinite} sample(s)")
    reason = "; ".join(failed) if failed else "passed: " + "; ".join(passed)
    return GateResult(
        passed=not failed,
        reason=reason,
        max_accuracy_drop=max_accuracy_drop,
        min_agreement=min_agreement,
    )


def _points(fraction: float) -> str:
    """A difference of accuracies in percentage points, as accuracies print in percent."""
    return f"{fraction * 100:.2f} points"


def _needed_inputs(model: onnx.ModelProto) -> list[str]:
    inputs = graph_inputs(model)
    if not inputs:
        raise InvalidModelError("the model has no graph inputs to feed a dataset to")
    return inputs


def _declared_classes(model: onnx.ModelProto) -> int | None:
    """The class count the first output declares (``[N, C]`` with a fixed ``C``), if any."""
    if not model.graph.output:
        return None
    tensor_type = model.graph.output[0].type.tensor_type
    dims = tensor_type.shape.dim if tensor_type.HasField("shape") else ()
    if len(dims) == 2 and dims[1].HasField("dim_value"):
        return dims[1].dim_value
    return None


def _check_labels(labels: np.ndarray | None, samples: int, classes: int | None) -> None:
    if labels is None:
        return
    given = f"labels are {labels.dtype}{list(labels.shape)}"
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{given}; they must be integer classes, shape [{samples}]")
    if labels.shape != (samples,):
        raise DatasetError(f"{given}; they must have shape [{samples}], one per sample")
    if not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes is not None and high >= classes):
        allowed = "must be >= 0" if classes is None else f"must be in [0, {classes - 1}]"
        raise DatasetError(f"labels range over [{low}, {high}]; the model's classes {allowed}")
