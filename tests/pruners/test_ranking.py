"""``Ranking``: masks from prefixes of one score order equal selection afresh at every count."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.pruners.allocations.global_ import global_
from onnxprune.pruners.masks import masks_from_counts
from onnxprune.pruners.ranking import Ranking


def _scores(seed: int) -> dict[str, np.ndarray]:
    # Few distinct values (many ties, inside and across layers) and already-pruned weights.
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in (("a", (4, 5)), ("b", (7,)), ("c", (3, 2, 2))):
        values = rng.integers(0, 4, size=shape).astype(np.float64)
        values[rng.random(shape) < 0.2] = -np.inf
        out[name] = values
    return out


@pytest.mark.parametrize("seed", range(5))
def test_prefix_masks_equal_selection_at_every_count(seed):
    scores = _scores(seed)
    shapes = {name: s.shape for name, s in scores.items()}
    total = sum(s.size for s in scores.values())
    ranking = Ranking.of(scores, across_layers=True)
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


def test_an_already_pruned_weight_never_comes_back():
    scores = {"w": np.array([3.0, -np.inf, 1.0, -np.inf])}
    ranking = Ranking.of(scores)
    # Three removals: the two already gone, then the lowest live one (1.0).
    assert ranking.masks({"w": 3})["w"].tolist() == [True, False, False, False]
    # One removal asked, two weights already gone: both stay gone, nothing else goes.
    assert ranking.masks({"w": 1})["w"].tolist() == [True, False, True, False]


def test_global_counts_needs_the_order_across_layers():
    with pytest.raises(ValueError, match="across_layers"):
        Ranking.of({"w": np.zeros(3)}).global_counts(1)
