"""The Pareto front and the recommended model, against hand answers and a sort-based sweep."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onnxprune.choice import (
    Candidate,
    accuracy_vs_cost,
    accuracy_vs_gain,
    pareto_front,
    recommend,
)


def _front_by_sorting(points):
    """The front by a sweep: sort by the first figure (high first), then keep a point whose
    second figure is at least the best second figure of every point strictly higher in the
    first one and of every point equal in the first one (then it is the best of its tie)."""
    real = sorted((p for p in points if p is not None), key=lambda p: (-p[0], -p[1]))
    kept, best_above = set(), float("-inf")
    i = 0
    while i < len(real):
        j = i
        while j < len(real) and real[j][0] == real[i][0]:
            j += 1
        top = real[i][1]  # the best second figure among this tie of first figures
        if top > best_above:
            kept.add(real[i])
        best_above = max(best_above, top)
        i = j
    return tuple(p is not None and p in kept for p in points)


def test_front_of_hand_made_points():
    # accuracy vs MACs (fewer is better): b is beaten by a (more accurate, cheaper); d ties a
    points = [
        accuracy_vs_cost(0.95, 100),  # a: front
        accuracy_vs_cost(0.90, 120),  # b: a is better in both
        accuracy_vs_cost(0.80, 40),  # c: the cheapest
        accuracy_vs_cost(0.95, 100),  # d: equal to a, so on the front too
        accuracy_vs_cost(None, 10),  # e: failed run, no accuracy
        accuracy_vs_cost(0.80, 60),  # f: c is as accurate and cheaper
    ]
    assert pareto_front(points) == (True, False, True, True, False, False)
    assert pareto_front(points) == _front_by_sorting(points)
    speed = [accuracy_vs_gain(0.9, 1.0), accuracy_vs_gain(0.85, 2.5), accuracy_vs_gain(0.8, 2.0)]
    assert pareto_front(speed) == (True, True, False)


FIGURES = st.integers(0, 6).map(float)


@given(st.lists(st.one_of(st.none(), st.tuples(FIGURES, FIGURES)), max_size=12))
def test_front_equals_a_sort_based_sweep(points):
    assert pareto_front(points) == _front_by_sorting(points)


def test_recommended_is_the_fewest_macs_then_the_smallest_file_that_passed():
    runs = [
        Candidate("magnitude 50%", True, 25_100, 120_000),
        Candidate("magnitude 90%", True, 5_020, 110_000),
        Candidate("lamp 90%", True, 5_020, 100_000),  # as few MACs, a smaller file
        Candidate("magnitude 99%", False, 502, 90_000),  # cheapest, but failed the gate
        Candidate("lamp 95%", True, None, 80_000),  # MACs unknown: after every known count
    ]
    assert recommend(runs) == 2
    assert recommend(runs[:2]) == 1
    assert recommend([runs[3]]) is None  # none passes
    assert recommend([runs[4], runs[0]]) == 1
    assert recommend([]) is None
