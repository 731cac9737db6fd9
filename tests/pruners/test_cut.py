"""Global allocation and masks by one selection (``_cut``) against the old partition algorithm.

The reference is the algorithm ``global_`` and ``masks_from_counts`` used before the selection
kernel: every score to float64, one ``np.partition`` over all of them for the global threshold,
then one ``np.partition`` per layer. Scores come from a few values (many ties within and across
layers) with ``-inf`` (already-pruned weights), in float32 and float64. The kernel is also run
with a tiny sample, so that its bracketed selection and its whole-array fallback both run on
small inputs, and once at its default sample on layers large enough to be bracketed.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.pruners import _cut
from onnxprune.pruners.allocations.global_ import global_, global_masks
from onnxprune.pruners.masks import masks_from_counts

VALUES = (-np.inf, -1.5, 0.0, 0.25, 0.25 + 2**-30, 1.0, 3.0, np.inf)  # 0.25 + 2**-30: one
# float64 value that float32 cannot tell from 0.25, so float32 layers hold more ties


def old_global(shapes, target, scores):
    flat = [np.asarray(scores[n], np.float64).reshape(-1) for n in shapes]
    budget = round(target * sum(f.size for f in flat))
    counts = np.zeros(len(flat), np.int64)
    if budget:
        threshold = np.partition(np.concatenate(flat), budget - 1)[budget - 1]
        below = [np.count_nonzero(f < threshold) for f in flat]
        ties_left = budget - sum(below)
        for i, f in enumerate(flat):
            take = min(ties_left, int(np.count_nonzero(f == threshold)))
            counts[i] = below[i] + take
            ties_left -= take
    return {n: int(c) for n, c in zip(shapes, counts, strict=True)}


def old_keep_top(scores, k):
    flat = scores.reshape(-1)
    keep = flat != -np.inf
    if k > 0:
        threshold = np.partition(flat, k - 1)[k - 1]
        keep &= flat > threshold
        ties = np.flatnonzero(flat == threshold)
        below = int(np.count_nonzero(flat < threshold))
        keep[ties[k - below :]] = threshold != -np.inf
    return keep.reshape(scores.shape)


def stable_sort_counts(shapes, k, scores):
    """How many of the first ``k`` of a stable sort of the concatenation fall in each layer."""
    flat = [np.asarray(scores[n], np.float64).reshape(-1) for n in shapes]
    layer = np.concatenate([np.full(f.size, i) for i, f in enumerate(flat)])
    order = np.argsort(np.concatenate(flat), kind="stable")[:k]
    return {n: int(np.count_nonzero(layer[order] == i)) for i, n in enumerate(shapes)}


@st.composite
def layers(draw):
    n = draw(st.integers(1, 4))
    out = {}
    for i in range(n):
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=2)))
        size = int(np.prod(shape))
        picks = draw(st.lists(st.sampled_from(VALUES), min_size=size, max_size=size))
        dtype = draw(st.sampled_from((np.float32, np.float64)))
        out[f"w{i}"] = np.array(picks, np.float64).astype(dtype).reshape(shape)
    return out


@settings(deadline=None, derandomize=True)
@given(layers(), st.floats(0, 1, exclude_max=True))
def test_global_counts_and_masks_equal_the_partition_algorithm(scores, target):
    shapes = {n: s.shape for n, s in scores.items()}
    total = sum(s.size for s in scores.values())
    expected_counts = old_global(shapes, target, scores)
    assert expected_counts == stable_sort_counts(shapes, round(target * total), scores)
    counts = global_(shapes, target, scores)
    assert counts == expected_counts
    fused = global_masks(shapes, target, scores)
    separate = masks_from_counts(scores, counts)
    for name, s in scores.items():
        expected = old_keep_top(np.asarray(s, np.float64), counts[name])
        np.testing.assert_array_equal(fused[name], expected, err_msg=name)
        np.testing.assert_array_equal(separate[name], expected, err_msg=name)


@settings(deadline=None, derandomize=True)
@given(layers(), st.data(), st.integers(1, 4), st.sampled_from((np.float32, np.float64)))
def test_bracketed_selection_equals_a_whole_partition(scores, data, sample, dtype):
    # A sample of 1-4 values brackets the rank from inputs of 5 values on: the bracket often
    # misses on these few values, so the fallback runs too.
    flat = [np.asarray(s, dtype).reshape(-1) for s in scores.values()]
    total = sum(f.size for f in flat)
    if total == 0:
        return
    k = data.draw(st.integers(1, total))
    cut = _cut.find_cut(flat, k, sample=sample)
    everything = np.concatenate(flat)
    value = np.partition(everything, k - 1)[k - 1]
    assert cut.value == value and cut.value.dtype == dtype
    assert cut.below.tolist() == [np.count_nonzero(f < value) for f in flat]
    assert cut.equal.tolist() == [np.count_nonzero(f == value) for f in flat]
    shapes = {str(i): f.shape for i, f in enumerate(flat)}
    by_sort = stable_sort_counts(shapes, k, dict(zip(shapes, flat, strict=True)))
    assert cut.removed(k).tolist() == list(by_sort.values())
    for f, removed, below, equal in zip(flat, cut.removed(k), cut.below, cut.equal, strict=True):
        keep = _cut.keep_above(f, cut.value, int(removed - below), int(equal))
        np.testing.assert_array_equal(keep, old_keep_top(f, int(removed)))


def test_a_sample_that_misses_the_rank_still_gives_the_exact_cut():
    # The strided sample (every 4th value from index 2) sees only the 9s; the rank is among
    # the 0s and 1s, below the bracket, so the whole array is partitioned.
    values = np.array([0, 1, 9, 0] * 8, np.float32)
    cut = _cut.find_cut([values], 5, sample=8)
    assert cut.value == 0 and cut.below.tolist() == [0] and cut.equal.tolist() == [16]


def test_large_layers_with_ties_and_pruned_weights_match_the_partition_algorithm():
    # Over 4 x 2**16 scores, so the default sample brackets the rank; 40 distinct values leave
    # thousands of ties at the cut, spread over three layers of two dtypes.
    rng = np.random.default_rng(0)
    scores = {}
    for name, size, dtype in (
        ("a", 150_000, np.float32),
        ("b", 70_001, np.float64),
        ("c", 90_000, np.float32),
    ):
        values = rng.integers(0, 40, size).astype(dtype)
        values[rng.random(size) < 0.3] = -np.inf
        scores[name] = values.reshape(-1, 1)
    shapes = {n: s.shape for n, s in scores.items()}
    for target in (0.1, 0.3, 0.5, 0.77, 0.9):
        counts = global_(shapes, target, scores)
        assert counts == old_global(shapes, target, scores)
        fused = global_masks(shapes, target, scores)
        for name, s in scores.items():
            expected = old_keep_top(np.asarray(s, np.float64), counts[name])
            np.testing.assert_array_equal(fused[name], expected)
            np.testing.assert_array_equal(masks_from_counts(scores, counts)[name], expected)
