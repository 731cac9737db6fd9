"""Structured filter criteria: one score per dependency group, higher = keep.

L1-norm filter pruning (Li et al., as compared by Wang et al., PAPERS.md section 3) scores a unit
by the mean |w| of its filter; a dependency group (``onnxprune.structured.groups``) by the mean
over all its members' filters. A criterion is ``fn(stats, rng) -> scores``, one score per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxprune.pruners.registry import criterion


@dataclass(frozen=True)
class FilterStats:
    """Per group, over all its filters: sum of |w|, sum of w², number of weights."""

    abs_sum: np.ndarray
    sq_sum: np.ndarray
    count: np.ndarray


@criterion("l1", "mean |w| over the group's filters (Li et al.'s L1-norm filter pruning)")
def l1(stats: FilterStats, rng: np.random.Generator) -> np.ndarray:
    """Mean |w| over the group's filters (Li et al.'s filter L1 norm, per weight)."""
    return stats.abs_sum / np.maximum(stats.count, 1)


@criterion("l2", "root mean square of the group's filters")
def l2(stats: FilterStats, rng: np.random.Generator) -> np.ndarray:
    """Root mean square over the group's filters."""
    return np.sqrt(stats.sq_sum / np.maximum(stats.count, 1))


@criterion("random", "a random score per group, seeded (a baseline)")
def random(stats: FilterStats, rng: np.random.Generator) -> np.ndarray:
    """A random score per group (a baseline)."""
    return rng.random(stats.count.size)
