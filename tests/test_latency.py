"""``onnxprune.latency``: the round schedule, the speedup's interval, the warnings, the checks.

The interval is checked on synthetic latencies whose answer is known without the bootstrap:
a constant factor between the sides makes every resample's ratio that factor exactly; samples
drawn from one distribution for both sides have a true ratio of 1, so about 95% of 95%
intervals over many independent data sets must contain 1 (the seeds are fixed, so the count is
the same on every run); a known factor with noise is inside its interval and 1 is not.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from onnxprune.errors import InvalidOptionError
from onnxprune.latency import (
    MAX_PAIRS,
    MAX_RUNS,
    Speedup,
    check_timing,
    latency,
    speedup,
    time_rounds,
    timing_warnings,
)


def test_a_constant_factor_gives_exactly_that_factor_and_a_zero_width_interval() -> None:
    # Pairs are drawn together: unpaired draws would put different runs in the two medians
    # and scatter the ratios around the factor.
    model = np.random.default_rng(3).lognormal(-9, 0.4, size=40)  # even: a median of two
    for factor in (2.0, 0.5):
        result = speedup(factor * model, model)
        assert (result.value, result.low, result.high) == (factor, factor, factor)


def test_identical_distributions_give_intervals_around_1_at_their_nominal_rate() -> None:
    covered, values = 0, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        model, baseline = rng.lognormal(-9, 0.3, size=(2, 80))
        result = speedup(baseline, model, seed=seed)
        covered += result.low <= 1.0 <= result.high
        values.append(result.value)
    # Binomial(200, 0.95) lies in [180, 200] with probability above 0.999.
    assert 180 <= covered <= 200
    assert np.median(values) == pytest.approx(1.0, abs=0.02)


def test_a_known_factor_with_noise_is_inside_the_interval_and_1_is_not() -> None:
    rng = np.random.default_rng(7)
    model = rng.lognormal(-9, 0.2, size=500)
    baseline = 1.5 * rng.lognormal(-9, 0.2, size=500)  # medians: 1.5 times apart
    result = speedup(baseline, model)
    assert result.low < 1.5 < result.high
    assert result.low > 1.3  # the half-width for 500 pairs of 20% noise is about 3%
    assert result.value == np.median(baseline) / np.median(model)


def test_the_same_samples_and_seed_give_the_same_interval() -> None:
    rng = np.random.default_rng(1)
    model, baseline = rng.lognormal(-9, 0.3, size=(2, 60))
    first, again = speedup(baseline, model, seed=5), speedup(baseline, model, seed=5)
    assert first == again
    assert speedup(baseline, model, seed=6) != first  # another seed, other draws
    assert speedup(baseline, model, confidence=0.5).high < first.high  # narrower level


def test_more_pairs_than_the_bootstrap_draws_from_still_give_an_honest_interval() -> None:
    rng = np.random.default_rng(2)
    n = 3 * MAX_PAIRS + 1
    model = rng.lognormal(-9, 0.3, size=n)
    baseline = 1.2 * rng.lognormal(-9, 0.3, size=n)
    result = speedup(baseline, model)
    assert result.value == np.median(baseline) / np.median(model)  # from all the runs
    assert result.low < 1.2 < result.high
    assert result.low < result.value < result.high


def test_a_model_median_of_0_has_no_speedup() -> None:
    assert speedup(np.ones(5), np.array([0.0, 0.0, 0.0, 1.0, 1.0])) is None


def test_latency_percentiles_in_milliseconds() -> None:
    seconds = np.arange(1, 101) / 1000  # 1 ms .. 100 ms
    got = latency(seconds)
    # numpy's linear interpolation: p50 of 1..100 is 50.5, p90 90.1, p95 95.05.
    assert (got.p50, got.p90, got.p95, got.runs) == pytest.approx((50.5, 90.1, 95.05, 100))


class _Side:
    """A side that records ``(name, batch)`` of each run into a shared list."""

    def __init__(self, name: str, calls: list, sleep: float = 0.0) -> None:
        self.name, self.calls, self.sleep = name, calls, sleep

    def __call__(self, batch: int) -> str:
        self.calls.append((self.name, batch))
        if self.sleep:
            time.sleep(self.sleep)
        return f"{self.name}{batch}"


def test_rounds_warm_up_then_cycle_the_batches_in_alternating_order() -> None:
    calls: list = []
    seen: list = []
    times = time_rounds(
        [_Side("m", calls), _Side("b", calls)],
        3,
        warmup=2,
        min_time=0.0,
        min_runs=5,
        first_pass=lambda batch, outputs: seen.append((batch, outputs)),
    )
    assert calls == [
        ("m", 0), ("b", 0), ("m", 0), ("b", 0),  # warm-up, untimed
        ("m", 0), ("b", 0), ("b", 1), ("m", 1), ("m", 2), ("b", 2),  # the first pass
        ("b", 0), ("m", 0), ("m", 1), ("b", 1),  # again, until 5 runs each
    ]  # fmt: skip
    assert seen == [(0, ["m0", "b0"]), (1, ["m1", "b1"]), (2, ["m2", "b2"])]
    assert [len(t) for t in times] == [5, 5]


def test_every_batch_runs_once_even_with_fewer_runs_asked() -> None:
    calls: list = []
    times = time_rounds([_Side("m", calls)], 4, warmup=0, min_time=0.0, min_runs=1)
    assert calls == [("m", 0), ("m", 1), ("m", 2), ("m", 3)]
    assert len(times[0]) == 4


def test_rounds_stop_once_the_slower_side_has_the_minimum_time() -> None:
    sides = [_Side("fast", []), _Side("slow", [], sleep=0.002)]
    times = time_rounds(sides, 1, warmup=0, min_time=0.03, min_runs=1)
    # The stopping rule itself (no limit on how long the test takes): the round before the last
    # had less than min_time on every side, the last brought the slower side to it.
    assert max(t[:-1].sum() for t in times) < 0.03 <= max(t.sum() for t in times)
    assert times[1].sum() >= 0.03
    assert len(times[0]) == len(times[1]) >= 2


def test_warnings_for_few_batches_and_wide_intervals() -> None:
    narrow = Speedup(value=2.0, low=1.9, high=2.1, confidence=0.95)
    wide = Speedup(value=2.0, low=1.7, high=2.1, confidence=0.95)
    assert timing_warnings(5, narrow) == []
    assert timing_warnings(5, None) == []
    few = timing_warnings(1, None)
    assert len(few) == 1
    assert few[0].startswith("only 1 distinct batch(es) were timed (fewer than 5)")
    (too_wide,) = timing_warnings(12, wide)
    assert too_wide.startswith("the speedup's 95% interval [1.70, 2.10] reaches beyond +/-10%")
    assert len(timing_warnings(4, wide)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_time": -1.0}, r"^min_time=-1\.0 must be a number of seconds in \[0, 3600\]$"),
        ({"min_time": 3601}, r"^min_time=3601 must be a number of seconds in \[0, 3600\]$"),
        ({"min_time": float("nan")}, r"^min_time=nan must be"),
        ({"min_time": float("inf")}, r"^min_time=inf must be"),
        ({"min_time": "1"}, r"^min_time='1' must be"),
        ({"min_runs": 0}, r"^min_runs=0 must be an integer in \[1, 1000000\]$"),
        ({"min_runs": 2.5}, r"^min_runs=2\.5 must be an integer in \[1, 1000000\]$"),
        ({"min_runs": 10**6 + 1}, r"^min_runs=1000001 must be an integer in \[1, 1000000\]$"),
        ({"min_runs": True}, r"^min_runs=True must be"),
        ({"threads": -1}, r"^threads=-1 must be an integer in \[0, 256\] \(0: ONNX Runtime's"),
        ({"threads": 257}, r"^threads=257 must be an integer in \[0, 256\]"),
        ({"confidence": 1.0}, r"^confidence=1\.0 must be in \(0, 1\)$"),
        ({"confidence": 0}, r"^confidence=0 must be in \(0, 1\)$"),
    ],
)
def test_bad_timing_options_are_refused(options: dict, message: str) -> None:
    given = {"min_time": 1.0, "min_runs": 20, "threads": 1, "confidence": 0.95, **options}
    with pytest.raises(InvalidOptionError, match=message):
        check_timing(**given)


def test_the_minimum_time_is_given_up_after_max_runs_rounds() -> None:
    # A model of microseconds asked for an hour would hold hundreds of millions of times: timing
    # stops after MAX_RUNS rounds (a side that does nothing gets there in a second or two).
    (times,) = time_rounds([lambda batch: None], 1, warmup=0, min_time=3600.0, min_runs=1)
    assert len(times) == MAX_RUNS
