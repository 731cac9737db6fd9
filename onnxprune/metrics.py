"""Label-free comparisons of a model's outputs with a baseline's: a registry of metrics, gates.

Every registered comparison is computed on each output the two models have in common (paired by
name, or by position when the names differ), one sample at a time on the flattened output ``a``
(model) and ``b`` (baseline), in float64, then reduced over the samples. None needs labels, so
they check regressors, detectors and embedders as well as classifiers:

==================  =========================================  ====  =========================
metric              per sample                                 over  gate (fails when)
==================  =========================================  ====  =========================
``max_abs_error``   ``max_i |a_i - b_i|``                      max   ``max_abs_error`` (above)
``mean_abs_error``  ``mean_i |a_i - b_i|``                     mean  ``max_mean_abs_error``
``max_rel_error``   ``max_i |a_i - b_i| / (|b_i| + EPS)``      max   ``max_rel_error``
``mean_rel_error``  ``mean_i |a_i - b_i| / (|b_i| + EPS)``     mean  ``max_mean_rel_error``
``cosine``          ``a.b / (|a| |b|)``                        mean  ``min_cosine`` (below)
``worst_cosine``    the same                                   min   ``min_worst_cosine``
``agreement``       ``argmax a == argmax b``                   mean  ``min_agreement``
``top5_agreement``  ``argmax b`` among the 5 highest of ``a``  mean  ``min_top5_agreement``
==================  =========================================  ====  =========================

``EPS`` is ``REL_EPS`` (1e-6). The cosine of two zero vectors is 1 (the outputs are equal), of
one zero vector and another 0. The agreements read the output as scores ``[N, C]`` (trailing
axes flattened into ``C``): they apply to non-boolean outputs of rank 2 or more with at least 2
classes (5 for top-5); a sample whose scores hold NaN on either side does not agree. A metric
that does not apply to an output is ``None`` there. NaN in the outputs makes the error and
cosine metrics NaN, which fails any gate.

With a ``class_axis`` (``Comparer(class_axis=-1)``, ``validate --class-axis -1``), the
agreements read one axis as the classes and every other non-batch position as its own
comparison: a language model's logits ``[N, T, V]`` (``class_axis=-1``) agree per token, a
segmentation ``[N, C, H, W]`` (``class_axis=1``) per pixel, and the value is the mean over the
``N * T`` (``N * H * W``) positions, as ``scores_of`` lays them out (``[N * positions, C]``).
Flattened, the same logits would compare one argmax over ``T * V`` values, which means nothing.
The other metrics do not read classes and are the same with or without it. Axis 0 (the batch) is
refused, negative axes count from the end as in NumPy, and an output of rank 2 or more that has
no such axis is an error; on ``[N, C]`` outputs ``class_axis`` 1 or -1 changes nothing.

A gate reads the worst value over the outputs (the largest error, the smallest cosine or
agreement): every output must pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from onnxprune.errors import InvalidModelError, InvalidOptionError
from onnxprune.registry import Registry

REL_EPS = 1e-6
"""Added to ``|b|`` in the relative errors, so a baseline value of 0 gives ``|a| / 1e-6``, not
infinity: an output that should be 0 and is 1e-9 counts as 0.1% off."""

TOLERANCE = 1e-9  # gate comparisons of fractions: 0.97 - 0.96 is 0.010000000000000009

PerSample = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One registered comparison of model and baseline outputs.

    Attributes:
        name: the key in results (``cosine``).
        per_sample: ``(a, b) -> values``: float64 ``[n, D]`` model and baseline outputs of ``n``
            samples to one value per sample.
        reduce: ``"max"``, ``"mean"`` or ``"min"`` over the samples.
        gate: the gate's option name; ``max_...`` fails above the limit, ``min_...`` below.
        title: what the metric is, in a sentence (gate reasons).
        header: its column title in text tables.
        classes: ``0`` for any output; else the output is read as scores and needs this many.
        percent: whether values print as percentages.
        allowed: the interval a gate's limit must lie in.
    """

    name: str
    per_sample: PerSample
    reduce: str
    gate: str
    title: str
    header: str
    classes: int = 0
    percent: bool = False
    allowed: tuple[float, float] = (0.0, math.inf)

    @property
    def higher_is_better(self) -> bool:
        """Whether the gate sets a minimum (cosine, agreement) rather than a maximum (errors)."""
        return self.gate.startswith("min_")

    def applies(self, out: np.ndarray, class_axis: int | None = None) -> bool:
        """Whether the metric is defined on an output array ``[N, ...]``.

        Args:
            out: the output, samples along axis 0.
            class_axis: the axis of the classes (see ``scores_of``); ``None``: the trailing
                axes flattened. It must be valid for ``out`` (``scores_of`` checks it).
        """
        if not _numeric(out) or out[:1].size == 0:
            return False
        if not self.classes:
            return True
        if not reads_scores(out):
            return False
        classes = out[:1].size if class_axis is None else out.shape[class_axis]
        return classes >= self.classes

    def format(self, value: float) -> str:
        """``95.00%`` for a fraction shown in percent, else six significant digits."""
        return f"{value:.2%}" if self.percent else f"{value:.6g}"


COMPARISONS: Registry[Comparison] = Registry("comparison", ())
"""Every comparison metric, by name, in the order they were registered."""


def comparison(
    name: str,
    *,
    reduce: str,
    gate: str,
    title: str,
    header: str,
    classes: int = 0,
    allowed: tuple[float, float] = (0.0, math.inf),
) -> Callable[[PerSample], PerSample]:
    """Register a per-sample function as the comparison ``name`` (stack them to reuse one).

    Args:
        name: the metric's key in results.
        reduce: ``"max"``, ``"mean"`` or ``"min"`` over the samples.
        gate: its gate option (``max_...`` or ``min_...``).
        title: what it measures, for gate reasons.
        header: a short column title.
        classes: the classes an output needs (score comparisons), 0 for any output.
        allowed: the interval a gate's limit must lie in.

    Returns:
        The decorator, which returns the function unchanged.
    """

    def register(function: PerSample) -> PerSample:
        percent = classes > 0
        COMPARISONS.add(
            name,
            Comparison(name, function, reduce, gate, title, header, classes, percent, allowed),
        )
        return function

    return register


@comparison(
    "max_abs_error",
    reduce="max",
    gate="max_abs_error",
    title="max absolute error",
    header="max abs",
)
def max_abs_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest ``|a - b|`` of each sample."""
    return np.abs(a - b).max(axis=1)


@comparison(
    "mean_abs_error",
    reduce="mean",
    gate="max_mean_abs_error",
    title="mean absolute error",
    header="mean abs",
)
def mean_abs_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean ``|a - b|`` of each sample."""
    return np.abs(a - b).mean(axis=1)


@comparison(
    "max_rel_error",
    reduce="max",
    gate="max_rel_error",
    title="max relative error",
    header="max rel",
)
def max_rel_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest ``|a - b| / (|b| + REL_EPS)`` of each sample."""
    return relative_error(a, b).max(axis=1)


@comparison(
    "mean_rel_error",
    reduce="mean",
    gate="max_mean_rel_error",
    title="mean relative error",
    header="mean rel",
)
def mean_rel_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean ``|a - b| / (|b| + REL_EPS)`` of each sample."""
    return relative_error(a, b).mean(axis=1)


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise ``|a - b| / (|b| + REL_EPS)``: relative to the baseline ``b``."""
    return np.abs(a - b) / (np.abs(b) + REL_EPS)


@comparison(
    "worst_cosine",
    reduce="min",
    gate="min_worst_cosine",
    title="cosine similarity of the worst sample",
    header="worst cos",
    allowed=(-1.0, 1.0),
)
@comparison(
    "cosine",
    reduce="mean",
    gate="min_cosine",
    title="cosine similarity (mean over samples)",
    header="cosine",
    allowed=(-1.0, 1.0),
)
def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a . b / (|a| |b|)`` of each sample: 1 when both are zero, 0 when only one is."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        value = np.einsum("ij,ij->i", a, b) / (na * nb)
    value = np.where((na == 0) | (nb == 0), np.where((na == 0) & (nb == 0), 1.0, 0.0), value)
    return np.clip(value, -1.0, 1.0)  # round-off; NaN stays NaN


@comparison(
    "agreement",
    reduce="mean",
    gate="min_agreement",
    title="top-1 agreement with the baseline",
    header="top-1 agr",
    classes=2,
    allowed=(0.0, 1.0),
)
def agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the model's highest-scored class is the baseline's, per sample."""
    return top_k_hits(a, _argmax(b), 1) & ~has_nan(b)


@comparison(
    "top5_agreement",
    reduce="mean",
    gate="min_top5_agreement",
    title="top-5 agreement with the baseline",
    header="top-5 agr",
    classes=5,
    allowed=(0.0, 1.0),
)
def top5_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the baseline's highest-scored class is among the model's 5 highest, per sample."""
    return top_k_hits(a, _argmax(b), 5) & ~has_nan(b)


def _argmax(scores: np.ndarray) -> np.ndarray:
    return scores.argmax(axis=1)


def top_k_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per sample, whether fewer than ``k`` classes score strictly higher than its label.

    A sample with a NaN score misses: NaN is neither above nor below, so it would pass.

    Args:
        scores: ``[N, C]`` scores.
        labels: ``[N]`` integer classes.
        k: how many of the highest classes count.

    Returns:
        ``[N]`` booleans.
    """
    if k == 1:
        return (scores.argmax(axis=1) == labels) & ~has_nan(scores)
    own = np.take_along_axis(scores, labels[:, None].astype(np.intp), axis=1)
    return ((scores > own).sum(axis=1) < k) & ~has_nan(scores)


def has_nan(scores: np.ndarray) -> np.ndarray:
    """Per sample of ``[N, C]`` scores, whether any of its scores is NaN."""
    if not np.issubdtype(scores.dtype, np.inexact):
        return np.zeros(scores.shape[0], bool)
    return np.isnan(scores).any(axis=1)


def _numeric(array: np.ndarray) -> bool:
    return array.dtype == bool or np.issubdtype(array.dtype, np.number)


def reads_scores(out: np.ndarray) -> bool:
    """Whether an output can be read as scores: numeric, not boolean, of rank 2 or more."""
    return out.ndim >= 2 and out.dtype != bool and np.issubdtype(out.dtype, np.number)


def check_class_axis(class_axis: int | None) -> None:
    """Refuse a class axis that is not an integer, or is the batch axis 0.

    Raises:
        InvalidOptionError: ``class_axis`` is a bool, not an integer, or 0.
    """
    if class_axis is None:
        return
    if isinstance(class_axis, bool) or not isinstance(class_axis, Integral):
        raise InvalidOptionError(f"class_axis={class_axis!r} must be an integer axis")
    if class_axis == 0:
        raise InvalidOptionError(
            "class_axis=0 is the batch (samples) axis; the classes are another axis, e.g. -1 "
            "for logits [N, T, V] or 1 for segmentation [N, C, H, W]"
        )


def class_axis_of(class_axis: int, rank: int, name: str) -> int:
    """``class_axis`` of an output of ``rank``, counted from 0 (NumPy's negative axes resolved).

    Raises:
        InvalidOptionError: the axis is not one of the output's non-batch axes.

    Example:
        >>> class_axis_of(-1, 3, "logits")
        2
    """
    axis = class_axis + rank if class_axis < 0 else class_axis
    if not 1 <= axis < rank:
        allowed = f"1..{rank - 1} or -{rank - 1}..-1" if rank > 1 else "none: it has no class axis"
        raise InvalidOptionError(
            f"class_axis={class_axis} is out of range for output {name!r} of rank {rank} "
            f"(allowed: {allowed}; axis 0 is the batch)"
        )
    return axis


def scores_of(out: np.ndarray, class_axis: int | None, name: str) -> np.ndarray:
    """An output ``[N, ...]`` as rows of scores ``[rows, C]``.

    Args:
        out: the output, samples along axis 0.
        class_axis: ``None``: one row per sample, the trailing axes flattened into ``C``; an
            axis: it becomes ``C``, and every sample and position of the other axes is a row
            (``[N, T, V]`` with -1 gives ``[N * T, V]``, rows ordered sample by sample).
        name: the output's name, for errors.

    Raises:
        InvalidOptionError: ``class_axis`` is out of range for ``out`` (see ``class_axis_of``).

    Example:
        >>> scores_of(np.zeros((2, 3, 5)), -1, "logits").shape
        (6, 5)
    """
    if class_axis is None:
        return out.reshape(out.shape[0], -1)
    moved = np.moveaxis(out, class_axis_of(class_axis, out.ndim, name), -1)
    return moved.reshape(-1, moved.shape[-1])


@dataclass(slots=True)
class _Running:
    """Sum, count, maximum and minimum of the values seen so far (NaN propagates)."""

    total: float = 0.0
    count: int = 0
    high: float = -math.inf
    low: float = math.inf

    def add(self, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        self.total += float(values.sum())
        self.count += values.size
        self.high = float(np.max([self.high, values.max(initial=-math.inf)]))
        self.low = float(np.min([self.low, values.min(initial=math.inf)]))

    def value(self, reduce: str) -> float | None:
        if not self.count:
            return None
        if reduce == "max":
            return self.high
        return self.low if reduce == "min" else self.total / self.count


@dataclass(slots=True)
class Comparer:
    """Every comparison on every common output, folded in one batch at a time.

    Only running sums, maxima and minima are kept, so the dataset's outputs are never all held.

    Attributes:
        class_axis: the axis of the classes the agreements read (see ``scores_of``); ``None``:
            the trailing axes flattened.
        running: output name -> metric name -> the values so far.
        flattened: outputs of rank 3 or more whose agreements read each sample's scores
            flattened (no ``class_axis``), with their shape past the batch (``hints``).
    """

    class_axis: int | None = None
    running: dict[str, dict[str, _Running]] = field(default_factory=dict)
    flattened: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def add(self, model: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray]) -> None:
        """Compare one batch of outputs (same samples on both sides).

        Raises:
            InvalidModelError: a pair of outputs differs in shape.
            InvalidOptionError: the class axis is out of range for an output of scores.
        """
        for name, a, b in pair_outputs(model, baseline):
            if a.shape != b.shape:
                raise InvalidModelError(
                    f"output {name!r} differs in shape: model {list(a.shape)}, baseline "
                    f"{list(b.shape)}"
                )
            axis = self.class_axis
            if axis is not None and reads_scores(a) and reads_scores(b):
                axis = class_axis_of(axis, a.ndim, name)
            metrics = [c for c in COMPARISONS.values() if c.applies(a, axis) and c.applies(b, axis)]
            running = self.running.setdefault(name, {c.name: _Running() for c in metrics})
            if not metrics or not a.shape[0]:
                continue
            if axis is None and a.ndim >= 3 and any(c.classes for c in metrics):
                self.flattened.setdefault(name, a.shape[1:])
            flat = [x.reshape(x.shape[0], -1).astype(np.float64) for x in (a, b)]
            scores = flat
            if axis is not None and any(c.classes for c in metrics):
                # the float64 copies above, seen in the outputs' shape: no second conversion
                scores = [
                    scores_of(f.reshape(x.shape), axis, name)
                    for f, x in zip(flat, (a, b), strict=True)
                ]
            for metric in metrics:
                running[metric.name].add(metric.per_sample(*(scores if metric.classes else flat)))

    def hints(self) -> tuple[str, ...]:
        """How to compare per position each output whose agreements read one vector per sample.

        A language model's logits ``[N, T, V]`` are the usual case: without a class axis, top-1
        agreement is one argmax over ``T * V`` values.
        """
        return tuple(
            f"output {name!r} ({' x '.join(map(str, shape))} per sample) is compared as one "
            f"vector of {math.prod(shape)} scores, so top-1 agreement is one argmax over all of "
            "them; for agreement per token or pixel give the class axis (class_axis, "
            "--class-axis: -1 for logits [N, T, V], 1 for [N, C, H, W])"
            for name, shape in self.flattened.items()
        )

    def result(self) -> dict[str, dict[str, float | None]]:
        """Output name -> metric name -> value (``None`` where the metric does not apply)."""
        return {
            output: {
                c.name: running[c.name].value(c.reduce) if c.name in running else None
                for c in COMPARISONS.values()
            }
            for output, running in self.running.items()
        }


def pair_outputs(
    model: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, model array, baseline array)`` of the outputs both have.

    By name when the baseline has every output name of the model; else by position (a renamed
    output), as many as the shorter side has, named after the model's.
    """
    if set(model) <= set(baseline):
        return [(name, array, baseline[name]) for name, array in model.items()]
    return [(n, a, b) for (n, a), b in zip(model.items(), baseline.values(), strict=False)]


def worst(outputs: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """Each metric's worst value over the outputs (largest error, smallest cosine or agreement).

    ``None`` for a metric no output has; NaN when any output's value is NaN.
    """
    result: dict[str, float | None] = {}
    for c in COMPARISONS.values():
        values = [v[c.name] for v in outputs.values() if v.get(c.name) is not None]
        pick = np.min if c.higher_is_better else np.max
        result[c.name] = float(pick(values)) if values else None
    return result


def gate_names() -> tuple[str, ...]:
    """The gate option of every comparison, in registry order."""
    return tuple(c.gate for c in COMPARISONS.values())


def check_limits(limits: Mapping[str, float], others: tuple[str, ...] = ()) -> None:
    """Refuse unknown gates and limits outside their interval.

    Args:
        limits: gate name -> limit.
        others: more gate names that are known and checked elsewhere (skipped here).

    Raises:
        InvalidOptionError: a name that is no comparison's gate, a limit that is not a finite
            number in the metric's interval.
    """
    gates = {c.gate: c for c in COMPARISONS.values()}
    for name, value in limits.items():
        if name in others:
            continue
        if name not in gates:
            known = ", ".join([*gates, *others])
            raise InvalidOptionError(f"unknown gate {name!r}; the gates are: {known}")
        low, high = gates[name].allowed
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            allowed = f"a number >= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
            raise InvalidOptionError(f"{name}={value!r} must be {allowed}")


def judge_limits(
    limits: Mapping[str, float], outputs: Mapping[str, Mapping[str, float | None]]
) -> tuple[list[str], list[str]]:
    """Each comparison gate in ``limits`` held against the worst output.

    Args:
        limits: gate name -> limit (see ``check_limits``).
        outputs: ``Comparer.result()``.

    Returns:
        ``(passed, failed)``: one readable phrase per gate, with the numbers.

    Raises:
        InvalidOptionError: a gate whose metric no output has (no baseline, no scores output).
    """
    passed, failed = [], []
    several = len(outputs) > 1
    for c in COMPARISONS.values():
        if c.gate not in limits:
            continue
        limit = limits[c.gate]
        named = {o: v[c.name] for o, v in outputs.items() if v.get(c.name) is not None}
        if not named:
            what = f"an output of scores [N, C>={c.classes}]" if c.classes else "an output"
            raise InvalidOptionError(f"{c.gate} needs a baseline and {what} to compare")
        output = max(named, key=lambda o: _badness(c, named[o]))
        value = named[output]
        text = f"{c.title} {c.format(value)}" + (f" (output {output!r})" if several else "")
        ok, phrase = held(text, value, limit, minimum=c.higher_is_better, show=c.format)
        (passed if ok else failed).append(phrase)
    return passed, failed


def held(
    text: str, value: float, limit: float, *, minimum: bool, show: Callable[[float], str]
) -> tuple[bool, str]:
    """Whether ``value`` is within ``limit`` (a minimum or a maximum), and the phrase saying so.

    A fraction off by round-off only (``0.97 - 0.96``) still passes; NaN never does.

    Example:
        >>> held("cosine 0.98", 0.98, 0.99, minimum=True, show="{:g}".format)
        (False, 'cosine 0.98, less than the required 0.99')
    """
    if minimum:
        ok = value >= limit - TOLERANCE
        verdict = "at least the required" if ok else "less than the required"
    else:
        ok = value <= limit + TOLERANCE
        verdict = "within the allowed" if ok else "more than the allowed"
    return ok, f"{text}, {verdict} {show(limit)}"


def _badness(metric: Comparison, value: float) -> float:
    """Larger is worse: NaN worst of all, then the lowest cosine or the largest error."""
    if math.isnan(value):
        return math.inf
    return -value if metric.higher_is_better else value
