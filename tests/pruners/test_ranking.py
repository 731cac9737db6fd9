"""``Ranking``: masks from prefixes of one lazily ordered score order equal selection afresh at
every count, and the changes between two counts are exactly where their masks differ."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.pruners.allocations.global_ import global_
from onnxprune.pruners.masks import masks_from_counts
from onnxprune.pruners.ranking import PartialOrder, Ranking


def _scores(seed: int) -> dict[str, np.ndarray]:
    # Few distinct values (many ties, inside and across layers) and already-pruned weights.
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in (("a", (4, 5)), ("b", (7,)), ("c", (3, 2, 2))):
        values = rng.integers(0, 4, size=shape).astype(np.float64)
        values[rng.random(shape) < 0.2] = -np.inf
        out[name] = values
    return out


def _ranked(seed: int) -> tuple[dict, dict, int, Ranking]:
    """Scores, their shapes and size, and their order across layers."""
    scores = _scores(seed)
    shapes = {name: s.shape for name, s in scores.items()}
    return scores, shapes, sum(s.size for s in scores.values()), Ranking(scores, across_layers=True)


@pytest.mark.parametrize("seed", range(5))
def test_prefix_masks_equal_selection_at_every_count(seed):
    scores, shapes, total, ranking = _ranked(seed)
    for k in range(total):
        counts = global_(shapes, k / total, scores)
        assert ranking.global_counts(k) == counts
        expected = masks_from_counts(scores, counts)
        got = ranking.masks(counts)
        for name in scores:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{name} k={k}")
    # Per-layer counts of any allocation, including fewer than a layer's pruned weights.
    rng = np.random.default_rng(seed)
    for _ in range(20):
        counts = {name: int(rng.integers(0, s.size + 1)) for name, s in scores.items()}
        expected, got = masks_from_counts(scores, counts), ranking.masks(counts)
        for name in scores:
            np.testing.assert_array_equal(got[name], expected[name])


@pytest.mark.parametrize("seed", range(8))
def test_a_layer_is_emptied_at_the_first_count_that_removes_all_of_it(seed):
    # Against a scan of every count (ties inside and across layers, already-pruned weights).
    scores, _, total, ranking = _ranked(seed)
    scores["d"] = np.full(3, -np.inf)  # a layer pruned already: empty from the first removals
    ranking = Ranking(scores, across_layers=True)
    total += 3
    scanned = {}
    for k in range(total + 1):
        for name, count in ranking.global_counts(k).items():
            if count == scores[name].size:
                scanned.setdefault(name, k)
    assert {name: ranking.emptied_at(name) for name in scores} == scanned
    assert ranking.emptying_order(scores) == sorted(scanned, key=scanned.get)


def test_an_already_pruned_weight_never_comes_back():
    scores = {"w": np.array([3.0, -np.inf, 1.0, -np.inf])}
    ranking = Ranking(scores)
    # Three removals: the two already gone, then the lowest live one (1.0).
    assert ranking.masks({"w": 3})["w"].tolist() == [True, False, False, False]
    # One removal asked, two weights already gone: both stay gone, nothing else goes.
    assert ranking.masks({"w": 1})["w"].tolist() == [True, False, True, False]


def test_global_counts_needs_the_order_across_layers():
    with pytest.raises(ValueError, match="across_layers"):
        Ranking({"w": np.zeros(3)}).global_counts(1)


@pytest.mark.parametrize("seed", range(20))
def test_partial_order_spans_equal_slices_of_a_stable_sort(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    values = rng.integers(0, 6, n).astype(np.float32)  # many ties: broken by index
    values[rng.random(n) < 0.2] = -np.inf
    expected = np.argsort(values, kind="stable")  # sorted whole: the order cut lazily
    given = values.copy()
    order = PartialOrder(values)
    for _ in range(15):  # cuts in any order, spans across several of them
        a, b = sorted(int(x) for x in rng.integers(0, n + 1, 2))
        np.testing.assert_array_equal(np.sort(order.span(a, b)), np.sort(expected[a:b]))
        if b:
            assert order.kth(b) == values[expected[b - 1]]
    np.testing.assert_array_equal(values, given)  # the input is copied, not reordered


@pytest.mark.parametrize("seed", range(5))
def test_changes_are_where_the_masks_of_two_counts_differ(seed):
    scores, shapes, total, ranking = _ranked(seed)
    rng = np.random.default_rng(seed)
    previous, before = 0, ranking.global_masks(0)
    for k in rng.integers(0, total + 1, 25):
        now = ranking.global_masks(k)
        expected = masks_from_counts(scores, global_(shapes, min(k, total - 1) / total, scores))
        if k < total:  # global_ takes targets below 1
            for name in scores:
                np.testing.assert_array_equal(now[name], expected[name])
        changes = ranking.global_changes(previous, k)
        for name in scores:
            differ = np.flatnonzero(now[name].reshape(-1) != before[name].reshape(-1))
            np.testing.assert_array_equal(np.sort(changes.get(name, [])), differ)
        previous, before = k, now
    counts_before = {name: 0 for name in scores}
    for _ in range(25):
        counts = {name: int(rng.integers(0, s.size + 1)) for name, s in scores.items()}
        changes = ranking.layer_changes(counts_before, counts)
        now, then = ranking.masks(counts), ranking.masks(counts_before)
        for name in scores:
            differ = np.flatnonzero(now[name].reshape(-1) != then[name].reshape(-1))
            np.testing.assert_array_equal(np.sort(changes.get(name, [])), differ)
        counts_before = counts


@pytest.mark.parametrize("seed", range(8))
def test_window_order_spans_and_counts_equal_a_stable_sort(seed):
    # A sample of 2 makes every window a bracket that may miss: the gathering then widens.
    rng = np.random.default_rng(seed)
    scores = {}
    for name in "abcd":
        values = rng.integers(0, 9, int(rng.integers(1, 40))).astype(np.float32)
        values[rng.random(values.size) < 0.3] = -np.inf
        scores[name] = values
    whole = np.concatenate(list(scores.values()))
    expected = np.argsort(whole, kind="stable")  # ties by layer, then index
    offsets = np.concatenate(([0], np.cumsum([s.size for s in scores.values()])))
    ranking = Ranking(scores, across_layers=True, sample=2)
    for _ in range(30):
        a = int(rng.integers(0, whole.size))
        b = min(whole.size, a + int(rng.integers(0, 12)))  # close counts, as a search asks
        changes = ranking.global_changes(a, b)
        starts = zip(scores, offsets[:-1], strict=True)
        got = np.sort(np.concatenate([changes.get(n, []) + o for n, o in starts]))
        gone = int(np.count_nonzero(whole == -np.inf))  # already pruned: never a change
        np.testing.assert_array_equal(got, np.sort(expected[max(a, gone) : max(b, gone)]))
        layer = np.searchsorted(offsets, expected[:b], side="right") - 1
        counts = np.bincount(layer, minlength=len(scores))
        assert ranking.global_counts(b) == dict(zip(scores, counts.tolist(), strict=True))
