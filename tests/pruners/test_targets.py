"""``search_nested`` and ``bisect_effective`` against a scan of every count.

Effective sparsity with nested masks is a non-decreasing step function of the removals: most
removals add 1/total (an active weight) or nothing (one already inactive), and a removal that
cuts a unit off adds every weight that hung on it at once (a jump), up to 1 when every path is
cut. Here such functions are drawn at random (counts of ``total``, so values repeat exactly and
targets fall on them), and both searches must return the largest count at most the target,
the value there, and as many analyses as they made calls.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.pruners.targets import bisect_effective, search_nested
from tests.helpers import examples


@st.composite
def curves(draw) -> tuple[list[float], int, int, float, int, float]:
    """A step function over ``size`` counts and a search over part of it.

    Returns:
        The values at each count, ``low``, ``high``, the target, ``size`` and the direct
        sparsity at ``low`` (never above the value there).
    """
    size = draw(st.integers(2, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    total = size + draw(st.integers(0, size))  # weights outside the search count too
    active = draw(st.floats(0.0, 1.0))
    steps = (rng.random(size) < active).astype(np.int64)
    jumps = rng.random(size) < draw(st.sampled_from([0.0, 0.001, 0.02, 0.2]))
    steps[jumps] += rng.integers(2, max(3, total // 20), int(jumps.sum()))
    counts = np.minimum(draw(st.integers(0, total // 4)) + np.cumsum(steps), total)
    cut = draw(st.integers(1, 2 * size))  # past it every path is cut
    counts[cut:] = total
    values = [float(c) / total for c in counts]
    low = draw(st.integers(0, size - 1))
    high = draw(st.integers(low, size - 1))
    on_a_value = draw(st.booleans())
    target = values[draw(st.integers(low, high))] if on_a_value else draw(st.floats(0, 0.999))
    target = min(target, 0.999)
    # Direct sparsity is never above effective; over the target, no count above low is looked
    # at (``steps.search_effective`` starts the bracket at the direct bound).
    direct_low = values[low] * draw(st.sampled_from([0.0, 0.5, 1.0]))
    if direct_low > target:
        high = low
    return values, low, high, target, size, direct_low


def _answer(values: list[float], low: int, high: int, target: float) -> int:
    """The largest count in ``[low, high]`` at most ``target``, else ``low``: a scan."""
    under = [k for k in range(low, high + 1) if values[k] <= target]
    return under[-1] if under else low


def _scanned(values: list[float], low: int, high: int, calls: list[int]):
    """``values`` as an ``effective_at`` that records each call in ``calls``."""

    def effective_at(k: int) -> float:
        assert low <= k <= high
        calls.append(k)
        return values[k]

    return effective_at


@settings(max_examples=examples(500), deadline=None)
@given(curves())
def test_both_searches_find_what_a_scan_finds(curve):
    values, low, high, target, size, direct_low = curve
    for search, args in (
        (search_nested, (target, size, direct_low)),
        (bisect_effective, (target,)),
    ):
        calls: list[int] = []
        found = search(_scanned(values, low, high, calls), low, high, *args)
        assert found.removed == _answer(values, low, high, target)
        assert found.effective_sparsity == values[found.removed]
        assert found.analyses == len(calls)
        # At most about three times bisection's analyses, whatever the curve (an interpolation,
        # an overshoot and a bisection per halving), usually far fewer.
        assert found.analyses <= 3 * (high - low + 1).bit_length() + 2
