"""Validation on ONNX Runtime: accuracy, comparisons with a baseline, latency, gate.

A dataset is an ``.npz`` file whose arrays are named after the model's graph inputs (samples along
axis 0), plus optional integer ``labels`` of shape ``[N]``; other arrays are ignored. For
accuracy, the model's first output is read as scores ``[N, C]`` (logits or probabilities;
trailing axes are flattened into ``C``). With a baseline, every tensor output with samples along
axis 0 is compared with the baseline's by the label-free metrics of ``onnxprune.metrics`` (output
errors, cosine similarity, top-k agreement), each with its gate; a user metric
(``onnxprune.user_metrics``) sees every such output over the whole dataset.

With a ``class_axis`` (``validate(..., class_axis=-1)``), accuracy and the agreements are per
position (token, pixel): the first output's class axis holds the scores, every other non-batch
position is one prediction, and ``labels`` are ``[N, *positions]`` (``[N, T]`` token ids for
logits ``[N, T, V]``; ``[N]`` still for an output ``[N, C]``); the fractions are over the
``N * positions`` predictions (see ``onnxprune.metrics.scores_of``).

The model runs in batches on the provider ``create_session`` starts (CUDA when it works, else the
CPU, unless asked otherwise), with ``threads`` intra-op threads; a baseline, when given, runs in a
session with the same settings. Timing is ``onnxprune.latency``'s: after ``warmup`` untimed
rounds, model and baseline run batch by batch, interleaved and in alternating order, cycling
through the data until each side has ``min_runs`` runs and the slower one ``min_time`` seconds of
them; the first pass over the data gives the accuracy and the comparisons. The result reports
each side's p50/p90/p95 per batch and the speedup ``baseline p50 / model p50`` with a bootstrap
confidence interval over the paired runs, and warns when the interval is wide or the data has too
few batches to time representatively.

The gate is a value (``GateResult``), never an exception: the CLI exits 3 when it fails.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from numbers import Integral
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import DatasetError, InvalidModelError, InvalidOptionError
from onnxprune.feeds import batches, check_feeds, fixed_batch_size, graph_inputs, session_for
from onnxprune.labels import check_labels, declared_classes, position_labels
from onnxprune.latency import (
    CONFIDENCE,
    MIN_RUNS,
    MIN_TIME,
    THREADS,
    check_timing,
    latency,
    speedup,
    time_rounds,
    timing_warnings,
)
from onnxprune.metrics import (
    Comparer,
    check_class_axis,
    check_limits,
    held,
    judge_limits,
    scores_of,
    top_k_hits,
)
from onnxprune.model import ModelSource, load_model
from onnxprune.pruners.masks import UNREADABLE_NPZ
from onnxprune.report import GateResult, ValidationResult
from onnxprune.runtime import create_session, run_session
from onnxprune.text import points
from onnxprune.user_metrics import (
    USER_GATES,
    Collector,
    UserMetric,
    call_metric,
    check_user_limits,
    judge_metric,
    load_metric,
)

LABELS = "labels"
"""Name of the optional array of integer class labels in a dataset."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """Evaluation data checked against a model's inputs.

    Attributes:
        inputs: arrays keyed by graph input name, samples along axis 0.
        labels: integer class of each sample, shape ``[samples]`` (with a class axis
            ``[samples, *positions]``, see ``onnxprune.labels``), or ``None``.
        samples: number of samples.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    samples: int


def load_dataset(
    path: str | os.PathLike, model: ModelSource, *, class_axis: int | None = None
) -> Dataset:
    """Read an ``.npz`` dataset and check it against ``model``'s graph inputs and classes.

    Args:
        path: the ``.npz`` file: one array per graph input, optional ``labels``.
        model: a path, serialized bytes or ``onnx.ModelProto`` (see ``load_model``).
        class_axis: the first output's class axis when accuracy is per position; the labels
            may then be ``[N, *positions]`` (their positions are checked against the output
            when it runs).

    Returns:
        The arrays the model needs and the labels, if any.

    Raises:
        DatasetError: a missing or unreadable file, a missing input, a wrong dtype (never
            cast), rank or fixed dimension, different sample counts, no samples, or labels that
            are not integers of shape ``[N]`` (``[N, ...]`` with ``class_axis``) within the
            model's classes.
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
    check_labels(labels, samples, declared_classes(proto, class_axis), class_axis)
    return Dataset(inputs=feeds, labels=labels, samples=samples)


def validate(
    model: ModelSource,
    data: str | os.PathLike | Dataset,
    *,
    baseline: ModelSource | None = None,
    provider: str = "auto",
    batch_size: int = 64,
    warmup: int = 3,
    min_time: float = MIN_TIME,
    min_runs: int = MIN_RUNS,
    threads: int = THREADS,
    confidence: float = CONFIDENCE,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    limits: Mapping[str, float] | None = None,
    metric: str | UserMetric | None = None,
    class_axis: int | None = None,
) -> ValidationResult:
    """Run ``model`` (and ``baseline``) on ``data`` with ONNX Runtime and measure both.

    Args:
        model: a path, serialized bytes or ``onnx.ModelProto``.
        data: an ``.npz`` path or a ``Dataset`` (see ``load_dataset``).
        baseline: the model to compare with (usually the unpruned one), same kinds as ``model``.
        provider: ``"auto"``, ``"cuda"`` or ``"cpu"`` (see ``create_session``).
        batch_size: samples per run; a model whose input fixes the batch size uses that (the
            last batch is padded by repeating its last sample, and the padding is discarded).
        warmup: untimed rounds on the first batch before timing (each side once per round).
        min_time: seconds of timed runs the slower side gets at least (both run equally often).
        min_runs: timed runs (batches) each side gets at least; every batch runs at least once.
        threads: ONNX Runtime intra-op threads of both sessions (0: ONNX Runtime's choice, one
            per physical core).
        confidence: level of the speedup's bootstrap interval.
        max_accuracy_drop: gate: baseline top-1 minus model top-1 must be at most this
            (needs labels and a baseline).
        min_agreement: gate: the fraction of top-1 classes that agree with the baseline must
            be at least this on every output of scores (needs a baseline); the same as
            ``limits={"min_agreement": ...}``.
        limits: gates by name: the comparison gates of ``onnxprune.metrics`` (``min_cosine``,
            ``max_abs_error``, ...; they need a baseline) and ``min_metric``/``max_metric`` on
            the user metric's values.
        metric: a user metric: ``module:function``, ``file.py:function`` or a callable (see
            ``onnxprune.user_metrics``), computed on the model and on the baseline.
        class_axis: the axis of the classes in the outputs of scores (negative counts from
            the end): -1 for a language model's logits ``[N, T, V]``, 1 for segmentation
            ``[N, C, H, W]``. Accuracy and the agreements are then per position (see
            ``onnxprune.metrics``); ``None`` (default): each sample's trailing axes are its
            scores.

    Returns:
        A ``ValidationResult``; its ``gate`` is ``None`` when no gate option was given, its
        baseline latencies and speedup are ``None`` without a baseline.

    Raises:
        InvalidOptionError: a bad option, a gate option without the baseline, labels or
            metric it needs, a provider that does not start, a user metric that cannot be
            loaded, raises or returns something else than numbers, or a class axis that is 0
            or out of range for an output of scores.
        InvalidModelError: a model cannot be read, or its first output is not ``[N, ...]``.
        DatasetError: the data does not fit the model (see ``load_dataset``).
    """
    limits = {
        **(limits or {}),
        **({} if min_agreement is None else {"min_agreement": min_agreement}),
    }
    _check_options(batch_size, warmup, max_accuracy_drop, limits)
    check_class_axis(class_axis)
    check_timing(min_time, min_runs, threads, confidence)
    compared = [name for name in limits if name not in USER_GATES]
    if baseline is None and (max_accuracy_drop is not None or compared):
        raise InvalidOptionError("the gate compares with a baseline; give --baseline too")
    if metric is None and any(name in USER_GATES for name in limits):
        raise InvalidOptionError("min_metric and max_metric need a metric (--metric MOD:FUNC)")
    user = None if metric is None else load_metric(metric)
    candidate = load_model(model)
    dataset = (
        _recheck(data, candidate, class_axis)
        if isinstance(data, Dataset)
        else load_dataset(data, candidate, class_axis=class_axis)
    )
    if max_accuracy_drop is not None and dataset.labels is None:
        raise InvalidOptionError("max_accuracy_drop needs labels; the dataset has no 'labels'")
    if class_axis is not None and baseline is None and dataset.labels is None:
        raise InvalidOptionError(
            "class_axis reads scores against a baseline or labels; give --baseline or a dataset "
            "with 'labels'"
        )
    runner = _Runner.start(model, candidate, dataset, provider, threads)
    reference = None
    if baseline is not None:
        reference = _Runner.start(baseline, load_model(baseline), dataset, provider, threads)
    step = runner.fixed or int(batch_size)
    tally = _Tally(
        comparer=None if reference is None else Comparer(class_axis), class_axis=class_axis
    )
    if user is not None:
        tally.collected = (Collector(), None if reference is None else Collector())
    sides = (runner,) if reference is None else (runner, reference)
    starts = range(0, dataset.samples, step)
    times = time_rounds(
        [partial(_run_nth, side, [side.batch(s, s + step) for s in starts]) for side in sides],
        len(starts),
        warmup=int(warmup),
        min_time=float(min_time),
        min_runs=int(min_runs),
        first_pass=partial(_tally_batch, tally, dataset.labels, step),
    )
    timing = _Timing(times, len(starts), step, int(threads), float(confidence))
    return _result(runner, reference, dataset, timing, tally, max_accuracy_drop, limits, user)


def _run_nth(
    runner: _Runner, feeds: list[dict[str, np.ndarray]], index: int
) -> dict[str, np.ndarray]:
    """``runner`` on the ``index``-th batch of ``feeds``."""
    return runner.run(feeds[index])


def _tally_batch(
    tally: _Tally,
    labels: np.ndarray | None,
    step: int,
    index: int,
    outputs: list[dict[str, np.ndarray]],
) -> None:
    """Count the outputs of batch ``index`` (model first, then the baseline if any)."""
    start = index * step
    part = None if labels is None else labels[start : start + step]
    tally.add(outputs[0], outputs[1] if len(outputs) > 1 else None, part)


@dataclass(frozen=True, slots=True)
class _Timing:
    """The timed runs of each side (seconds, paired) and how they were taken."""

    times: list[np.ndarray]
    batches: int
    step: int
    threads: int
    confidence: float


def _recheck(dataset: Dataset, model: onnx.ModelProto, class_axis: int | None) -> Dataset:
    """A ``Dataset`` built by the caller, checked against ``model`` as ``load_dataset`` would."""
    feeds = check_feeds(model, _needed_inputs(model), dataset.inputs, "dataset")
    samples = next(iter(feeds.values())).shape[0]
    if dataset.samples != samples:
        raise DatasetError(f"Dataset.samples={dataset.samples} but the inputs hold {samples}")
    check_labels(dataset.labels, samples, declared_classes(model, class_axis), class_axis)
    return dataset


def _check_options(
    batch_size: int, warmup: int, max_accuracy_drop: float | None, limits: Mapping[str, float]
) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise InvalidOptionError(f"batch_size={batch_size!r} must be a positive integer")
    if isinstance(warmup, bool) or not isinstance(warmup, Integral) or warmup < 0:
        raise InvalidOptionError(f"warmup={warmup!r} must be an integer >= 0")
    if max_accuracy_drop is not None and not 0.0 <= max_accuracy_drop <= 1.0:
        raise InvalidOptionError(f"max_accuracy_drop={max_accuracy_drop!r} must be in [0, 1]")
    check_limits(limits, others=USER_GATES)
    check_user_limits(limits)


@dataclass(frozen=True, slots=True)
class _Runner:
    """One model's session, the outputs it fetches and the dataset arrays it is fed.

    The outputs are the first (accuracy reads it) and every other numeric tensor output.
    """

    name: str | None
    session: ort.InferenceSession
    provider: str
    outputs: tuple[str, ...]
    fixed: int | None
    feeds: dict[str, np.ndarray]

    @classmethod
    def start(
        cls,
        source: ModelSource,
        proto: onnx.ModelProto,
        dataset: Dataset,
        provider: str,
        threads: int,
    ) -> _Runner:
        feeds = check_feeds(proto, _needed_inputs(proto), dataset.inputs, "dataset")
        if not proto.graph.output:
            raise InvalidModelError("the model has no outputs")
        if isinstance(source, (str, os.PathLike)):  # ONNX Runtime reads external data itself
            session, name = create_session(source, provider, threads=threads)
        else:
            session, name = session_for(proto, provider, threads=threads)
        fixed = fixed_batch_size(proto, list(feeds))
        display = Path(source).name if isinstance(source, (str, os.PathLike)) else None
        return cls(display, session, name, _fetched(session), fixed, feeds)

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: array[start:stop] for name, array in self.feeds.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs for ``feeds``, in runs of the fixed batch size when there is one.

        The first output must have samples along axis 0; another that has not (a scalar, a
        sequence length) is left out.
        """
        count = next(iter(feeds.values())).shape[0]
        step = self.fixed or count
        parts: dict[str, list[np.ndarray]] = {}
        for chunk in batches(feeds, count, step):
            size = next(iter(chunk.values())).shape[0]
            if size < step:
                chunk = {
                    k: np.concatenate([v, np.repeat(v[-1:], step - size, 0)])
                    for k, v in chunk.items()
                }
            outs = run_session(self.session, self.outputs, chunk)
            for i, (name, out) in enumerate(zip(self.outputs, map(np.asarray, outs), strict=True)):
                if out.ndim and out.shape[0] == step:
                    parts.setdefault(name, []).append(out[:size])
                elif i == 0:
                    raise InvalidModelError(
                        f"first output {name!r} has shape {list(out.shape)} for a batch of "
                        f"{step}; validation needs samples along axis 0"
                    )
        return {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in parts.items()}


def _fetched(session: ort.InferenceSession) -> tuple[str, ...]:
    """The first output and every other output that is a numeric or boolean tensor."""
    outputs = session.get_outputs()
    numeric = [
        o.name for o in outputs[1:] if o.type.startswith("tensor(") and "string" not in o.type
    ]
    return (outputs[0].name, *numeric)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` grown to ``size`` samples by repeating its last sample."""
    return np.concatenate([array, np.repeat(array[-1:], size - array.shape[0], axis=0)])


@dataclass(slots=True)
class _Tally:
    """Running counts over batches; only one batch of outputs is held at a time.

    Except for a user metric: ``collected`` keeps the model's (and the baseline's) outputs.
    With a ``class_axis``, each labelled position is one prediction (``predictions``).
    """

    comparer: Comparer | None = None
    collected: tuple[Collector, Collector | None] | None = None
    classes: int | None = None
    correct: list[int] | None = None  # top-1, top-5, baseline top-1, baseline top-5
    nonfinite: int = 0  # samples whose model output holds NaN or infinity
    class_axis: int | None = None
    predictions: int = 0  # labelled rows of scores: samples, times positions with a class axis

    def add(
        self,
        outs: dict[str, np.ndarray],
        refs: dict[str, np.ndarray] | None,
        labels: np.ndarray | None,
    ) -> None:
        out = next(iter(outs.values()))
        if np.issubdtype(out.dtype, np.inexact):
            self.nonfinite += int((~np.isfinite(out.reshape(out.shape[0], -1))).any(axis=1).sum())
        if self.comparer is not None and refs is not None:
            self.comparer.add(outs, refs)
        if self.collected is not None:
            for collector, side in zip(self.collected, (outs, refs), strict=True):
                if collector is not None and side is not None:
                    collector.add(side)
        if labels is None:
            return
        name = next(iter(outs))
        scores = _scores(out, self.class_axis, name)
        if self.classes is None:
            self.classes = scores.shape[1]
            self.correct = [0, 0, 0, 0]
        check_labels(labels, len(labels), self.classes, self.class_axis)
        if self.class_axis is not None:
            labels = position_labels(labels, out, self.class_axis, name)
        self.predictions += len(labels)
        self.correct[0] += _top_k(scores, labels, 1)
        self.correct[1] += _top_k(scores, labels, 5)
        if refs is not None:
            ref_scores = _scores(next(iter(refs.values())), self.class_axis, name)
            self.correct[2] += _top_k(ref_scores, labels, 1)
            self.correct[3] += _top_k(ref_scores, labels, 5)


def _scores(out: np.ndarray, class_axis: int | None, name: str) -> np.ndarray:
    if out.ndim < 2:
        raise InvalidModelError(
            f"the first output has shape {list(out.shape)}; accuracy needs scores [N, C]"
        )
    return scores_of(out, class_axis, name)


def _top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Samples whose label has fewer than ``k`` classes scored strictly higher."""
    return int(top_k_hits(scores, labels, k).sum())


def _result(
    runner: _Runner,
    reference: _Runner | None,
    dataset: Dataset,
    timing: _Timing,
    tally: _Tally,
    max_accuracy_drop: float | None,
    limits: Mapping[str, float],
    user: tuple[str, UserMetric] | None,
) -> ValidationResult:
    n = dataset.samples
    labelled = dataset.labels is not None
    five = tally.classes is not None and tally.classes >= 5
    correct = tally.correct or [0, 0, 0, 0]
    compared = reference is not None
    rows = tally.predictions or n  # more than the samples with a class axis
    top1 = correct[0] / rows if labelled else None
    baseline_top1 = correct[2] / rows if labelled and compared else None
    outputs = {} if tally.comparer is None else tally.comparer.result()
    first = next(iter(outputs.values()), {})
    values, baseline_values = _user_values(user, tally.collected, dataset.labels)
    own = latency(timing.times[0])
    other = latency(timing.times[1]) if compared else None
    ratio = (
        speedup(timing.times[1], timing.times[0], confidence=timing.confidence)
        if compared
        else None
    )
    sizes = [min(timing.step, n - b * timing.step) for b in range(timing.batches)]
    timed = sum(sizes[r % timing.batches] for r in range(own.runs))
    seconds = float(timing.times[0].sum())
    return ValidationResult(
        model=runner.name,
        baseline=None if reference is None else reference.name,
        provider=runner.provider,
        baseline_provider=None if reference is None else reference.provider,
        samples=n,
        batch_size=timing.step,
        top1=top1,
        top5=correct[1] / rows if labelled and five else None,
        baseline_top1=baseline_top1,
        baseline_top5=correct[3] / rows if labelled and five and compared else None,
        agreement=first.get("agreement"),
        max_abs_diff=first.get("max_abs_error"),
        mean_abs_diff=first.get("mean_abs_error"),
        latency_ms_p50=own.p50,
        latency_ms_p95=own.p95,
        throughput=timed / seconds if seconds > 0 else math.inf,
        baseline_latency_ms_p50=None if other is None else other.p50,
        baseline_latency_ms_p95=None if other is None else other.p95,
        speedup=None if ratio is None else ratio.value,
        gate=decide_gate(
            top1,
            baseline_top1,
            max_accuracy_drop,
            limits,
            outputs,
            values,
            nonfinite=tally.nonfinite,
        ),
        outputs=outputs,
        user_metrics=values,
        baseline_user_metrics=baseline_values,
        latency_ms_p90=own.p90,
        baseline_latency_ms_p90=None if other is None else other.p90,
        speedup_low=None if ratio is None else ratio.low,
        speedup_high=None if ratio is None else ratio.high,
        speedup_confidence=None if ratio is None else ratio.confidence,
        timed_runs=own.runs,
        threads=timing.threads,
        warnings=(
            *timing_warnings(timing.batches, ratio),
            *(tally.comparer.hints() if tally.comparer is not None else ()),
        ),
        class_axis=tally.class_axis,
    )


def _user_values(
    user: tuple[str, UserMetric] | None,
    collected: tuple[Collector, Collector | None] | None,
    labels: np.ndarray | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """The user metric on the model's outputs and on the baseline's (empty without one)."""
    if user is None or collected is None:
        return {}, {}
    model, baseline = collected
    values = call_metric(*user, model.outputs(), labels)
    return values, {} if baseline is None else call_metric(*user, baseline.outputs(), labels)


def decide_gate(
    top1: float | None,
    baseline_top1: float | None,
    max_accuracy_drop: float | None,
    limits: Mapping[str, float],
    outputs: Mapping[str, Mapping[str, float | None]],
    user_metrics: Mapping[str, float],
    *,
    nonfinite: int = 0,
) -> GateResult | None:
    """The gate's decision, or ``None`` when no threshold is given.

    Args:
        top1: the model's top-1 accuracy (``None`` without labels).
        baseline_top1: the baseline's.
        max_accuracy_drop: the largest allowed ``baseline_top1 - top1``.
        limits: the comparison gates (``onnxprune.metrics``) and the user metric's
            (``min_metric``, ``max_metric``), by name.
        outputs: the comparisons per output (``Comparer.result()``).
        user_metrics: the user metric's values on the model.
        nonfinite: samples on which the model's first output was NaN or infinite.

    A gate fails whatever its thresholds when the model's outputs were not finite on
    ``nonfinite`` samples: NaN or infinite scores make accuracy and agreement meaningless.

    Raises:
        InvalidOptionError: a threshold is given without the metric it checks.
    """
    if max_accuracy_drop is None and not limits:
        return None
    passed, failed = [], []
    if max_accuracy_drop is not None:
        if top1 is None or baseline_top1 is None:
            raise InvalidOptionError("max_accuracy_drop needs labels and a baseline")
        drop = baseline_top1 - top1
        moved = f"dropped {points(drop)}" if drop >= 0 else f"rose {points(-drop)}"
        text = f"top-1 {moved} ({baseline_top1:.2%} -> {top1:.2%})"
        ok, phrase = held(text, drop, max_accuracy_drop, minimum=False, show=points)
        (passed if ok else failed).append(phrase)
    for judged in (
        judge_limits({k: v for k, v in limits.items() if k not in USER_GATES}, outputs),
        judge_metric(user_metrics, limits),
    ):
        passed += judged[0]
        failed += judged[1]
    if nonfinite:
        failed.append(f"the model's outputs hold NaN or infinity on {nonfinite} sample(s)")
    reason = "; ".join(failed) if failed else "passed: " + "; ".join(passed)
    return GateResult(
        passed=not failed,
        reason=reason,
        max_accuracy_drop=max_accuracy_drop,
        min_agreement=limits.get("min_agreement"),
        limits=dict(limits),
    )


def _needed_inputs(model: onnx.ModelProto) -> list[str]:
    inputs = graph_inputs(model)
    if not inputs:
        raise InvalidModelError("the model has no graph inputs to feed a dataset to")
    return inputs
