"""Latency you can trust: repeated, interleaved timing and a confidence interval for the speedup.

One run of a side (the model, or the baseline it is compared with) is one batch through its
session. Timing a batch once per side gives numbers that move by tens of percent between
identical runs; this module repeats instead:

1. ``warmup`` untimed rounds on the first batch (each side once per round).
2. Timed rounds, each running every side once on the same batch, cycling through the batches.
   The order alternates round by round (even rounds: side 0 first; odd rounds: the reverse), so
   neither side always inherits the other's warm caches or spinning threads, and drift (CPU
   frequency, heat, other load) falls on both sides alike.
3. Rounds go on until every batch ran once (the outputs of that first pass are handed to the
   caller, e.g. for accuracy), each side has at least ``min_runs`` runs and the slower side has
   at least ``min_time`` seconds of timed runs. Every side runs once per round, so the faster
   side gets as many runs as the slower one in less time (asking ``min_time`` of the faster side
   too would run a slow baseline for as long as a fast model needs to add up a second). After
   ``MAX_RUNS`` rounds timing stops even short of ``min_time``.

Round ``i`` of the model and round ``i`` of the baseline ran on the same batch, one right after
the other: they form a pair. The speedup is ``median(baseline) / median(model)``; its confidence
interval is a percentile bootstrap over the pairs: ``resamples`` times, draw as many pairs as
there are with replacement (a seeded generator, so a result is reproducible), take the ratio of
the two medians of the draw, and report the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
quantiles of those ratios. Above ``MAX_PAIRS`` pairs (a model of microseconds timed for a second)
the draws come from ``MAX_PAIRS`` pairs evenly spread over the runs: the interval is then a little
wider than all the pairs would give (conservative), and the bootstrap stays well under a second.
Drawing whole pairs keeps what the two runs of a pair share (the
batch, the moment) together, so slow moments of the machine widen the interval instead of
biasing it. A model compared with itself gets an interval around 1; a constant factor between
the sides gives exactly that factor.

NumPy is imported when runs are timed: the command line reads the defaults for its ``--help``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING

from onnxprune import progress
from onnxprune.errors import InvalidOptionError

if TYPE_CHECKING:
    import numpy as np

MIN_TIME = 1.0
"""Default seconds of timed runs of the slower side."""
MIN_RUNS = 20
"""Default number of timed runs per side."""
THREADS = 1
"""Default ONNX Runtime intra-op threads of every timed session (0: ONNX Runtime's choice)."""
CONFIDENCE = 0.95
"""Default confidence level of the speedup's interval."""
RESAMPLES = 2000
"""Bootstrap resamples of the speedup's interval."""
MAX_TIME = 3600.0
"""Largest ``min_time``: an hour of timing (a server takes these options from its clients)."""
MAX_RUNS = 1_000_000
"""Largest ``min_runs``, and the rounds after which timing stops even short of ``min_time``
(a model of microseconds timed for long would otherwise hold millions of times)."""
MAX_THREADS = 256
"""Largest ``threads``: more is no faster, and each is an operating system thread."""
MAX_PAIRS = 2000
"""The bootstrap draws from at most this many pairs (evenly spread over the runs)."""
MIN_BATCHES = 5
"""Fewer distinct batches than this time the same few inputs over and over: a warning."""
MAX_HALF_WIDTH = 0.10
"""An interval reaching further than this fraction of the speedup from it: a warning."""

_ELEMENTS = 1 << 21  # resampled values held at once by the bootstrap (two float64 arrays: 32 MiB)


@dataclass(frozen=True, slots=True)
class Latency:
    """Per-run latency of one side, in milliseconds.

    Attributes:
        p50: the median run.
        p90: the 90th percentile.
        p95: the 95th percentile.
        runs: timed runs (warm-up excluded).
    """

    p50: float
    p90: float
    p95: float
    runs: int


@dataclass(frozen=True, slots=True)
class Speedup:
    """``median(baseline) / median(model)`` and its bootstrap confidence interval.

    Attributes:
        value: the ratio of the medians; above 1 the model is faster.
        low: the interval's lower end.
        high: the interval's upper end.
        confidence: the interval's level, e.g. 0.95.
    """

    value: float
    low: float
    high: float
    confidence: float


def check_timing(min_time: float, min_runs: int, threads: int, confidence: float) -> None:
    """Refuse timing options that cannot work, each message naming the option.

    Raises:
        InvalidOptionError: ``min_time`` not a number of seconds in [0, ``MAX_TIME``],
            ``min_runs`` not an integer in [1, ``MAX_RUNS``], ``threads`` not an integer in
            [0, ``MAX_THREADS``], ``confidence`` not in (0, 1).
    """
    if not _number(min_time) or not 0 <= min_time <= MAX_TIME:
        raise InvalidOptionError(
            f"min_time={min_time!r} must be a number of seconds in [0, {MAX_TIME:g}]"
        )
    if not _integer(min_runs) or not 1 <= min_runs <= MAX_RUNS:
        raise InvalidOptionError(f"min_runs={min_runs!r} must be an integer in [1, {MAX_RUNS}]")
    if not _integer(threads) or not 0 <= threads <= MAX_THREADS:
        raise InvalidOptionError(
            f"threads={threads!r} must be an integer in [0, {MAX_THREADS}] (0: ONNX Runtime's "
            "choice)"
        )
    if not _number(confidence) or not 0 < confidence < 1:
        raise InvalidOptionError(f"confidence={confidence!r} must be in (0, 1)")


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _integer(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def time_rounds(
    sides: Sequence[Callable[[int], object]],
    batches: int,
    *,
    warmup: int,
    min_time: float,
    min_runs: int,
    first_pass: Callable[[int, list], None] | None = None,
) -> list[np.ndarray]:
    """Seconds of every timed run of each side, interleaved round by round (module docstring).

    Args:
        sides: one callable per side; ``side(b)`` runs batch ``b`` and returns its output.
        batches: the number of batches, ``b`` in ``range(batches)``.
        warmup: untimed rounds on batch 0 first.
        min_time: seconds of timed runs the slower side needs at least.
        min_runs: timed runs each side needs at least (``min_time`` is given up after
            ``MAX_RUNS`` rounds; ``min_runs`` and the first pass over the data never are).
        first_pass: called with ``(b, outputs)`` (one output per side) for each batch of the
            first pass over the data, between rounds (never inside a timed run).

    Returns:
        One array per side, its run ``i`` paired with run ``i`` of every other side.
    """
    import numpy as np

    for _ in range(warmup):
        for side in sides:
            side(0)
    times: list[list[float]] = [[] for _ in sides]
    totals = [0.0] * len(sides)
    rounds = 0
    while rounds < max(batches, min_runs) or (max(totals) < min_time and rounds < MAX_RUNS):
        batch = rounds % batches
        order = range(len(sides)) if rounds % 2 == 0 else reversed(range(len(sides)))
        outputs: list = [None] * len(sides)
        for i in order:
            began = time.perf_counter()
            outputs[i] = sides[i](batch)
            took = time.perf_counter() - began
            times[i].append(took)
            totals[i] += took
        if first_pass is not None and rounds < batches:
            first_pass(batch, outputs)
        rounds += 1
        note = f"{max(totals):.1f} of at least {min_time:g} s timed"
        progress.report("validate", rounds, max(batches, min_runs), note)
    return [np.asarray(t, dtype=np.float64) for t in times]


def latency(seconds: np.ndarray) -> Latency:
    """The percentiles of one side's runs, in milliseconds."""
    import numpy as np

    p50, p90, p95 = (float(v) for v in np.percentile(seconds * 1e3, [50, 90, 95]))
    return Latency(p50=p50, p90=p90, p95=p95, runs=len(seconds))


def speedup(
    baseline: np.ndarray,
    model: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Speedup | None:
    """``median(baseline) / median(model)`` with a paired percentile-bootstrap interval.

    Args:
        baseline: seconds of the baseline's runs.
        model: seconds of the model's runs, ``model[i]`` paired with ``baseline[i]``.
        confidence: the interval's level.
        resamples: bootstrap draws.
        seed: seed of the draws (the same samples and seed give the same interval).

    Returns:
        The speedup, or ``None`` when the model's median is 0 (a clock too coarse to time it).

    Example:
        >>> import numpy as np
        >>> model = np.array([1.0, 1.2, 0.9, 1.1, 1.0])
        >>> s = speedup(2 * model, model)
        >>> (s.value, s.low, s.high)
        (2.0, 2.0, 2.0)
    """
    import numpy as np

    baseline = np.asarray(baseline, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    if baseline.shape != model.shape or model.ndim != 1 or not model.size:
        raise ValueError(f"paired runs needed, got {baseline.shape} and {model.shape}")
    if np.median(model) <= 0:
        return None
    value = float(np.median(baseline) / np.median(model))
    if model.size > MAX_PAIRS:
        spread = np.linspace(0, model.size - 1, MAX_PAIRS).round().astype(np.intp)
        baseline, model = baseline[spread], model[spread]
    rng = np.random.default_rng(seed)
    n = model.size
    ratios = np.empty(resamples)
    step = max(1, _ELEMENTS // n)
    for start in range(0, resamples, step):
        draw = rng.integers(0, n, size=(min(step, resamples - start), n))
        ratios[start : start + len(draw)] = np.median(baseline[draw], axis=1) / np.median(
            model[draw], axis=1
        )
    low, high = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Speedup(value=value, low=float(low), high=float(high), confidence=confidence)


def named_warnings(named: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """``"name: warning"`` for each warning of each named result, each warning's text once.

    A sweep's runs share their data, so a warning about it (too few batches) comes from every
    run; it is listed once, under the first name that has it.

    Example:
        >>> named_warnings([("dense", ["few batches"]), ("a", ["few batches", "wide"])])
        ['dense: few batches', 'a: wide']
    """
    seen: set[str] = set()
    lines = []
    for name, warnings in named:
        for warning in warnings:
            if warning not in seen:
                seen.add(warning)
                lines.append(f"{name}: {warning}")
    return lines


def timing_warnings(batches: int, ratio: Speedup | None) -> list[str]:
    """What makes these timings less trustworthy than they look, one sentence each.

    Args:
        batches: distinct batches the runs cycled through.
        ratio: the speedup, when a baseline was timed.
    """
    warnings = []
    if batches < MIN_BATCHES:
        warnings.append(
            f"only {batches} distinct batch(es) were timed (fewer than {MIN_BATCHES}): the "
            "same inputs repeat, so caches flatter the latencies; give more samples or a "
            "smaller batch size"
        )
    if ratio is not None and (
        ratio.low < ratio.value * (1 - MAX_HALF_WIDTH)
        or ratio.high > ratio.value * (1 + MAX_HALF_WIDTH)
    ):
        warnings.append(
            f"the speedup's {ratio.confidence:.0%} interval [{ratio.low:.2f}, {ratio.high:.2f}] "
            f"reaches beyond +/-{MAX_HALF_WIDTH:.0%} of {ratio.value:.2f}: time longer "
            "(a larger min time or min runs) on a quieter machine"
        )
    return warnings
