"""Minimum Threshold (MT): every layer keeps a minimum number of weights (no layer collapse)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations._quota import (
    apportion,
    as_dict,
    highest_reachable,
    layer_sizes,
)


def minimum_threshold(
    counts: Mapping[str, int], shapes: Mapping[str, tuple[int, ...]], sigma: float
) -> dict[str, int]:
    """Re-balance removal counts so that every layer keeps at least ``ceil(sigma * total)``.

    Minimum Threshold of Gupta et al., arXiv 2209.14624 (PAPERS.md section 2), the fix for layer
    collapse under Global MP. As in the authors' code, ``sigma`` is a fraction of *all*
    prunable weights (they used 0.005%..0.2%, i.e. ``sigma`` = 5e-5..2e-3), so the floor is
    ``keep_min = ceil(sigma * total)``, the same number of weights for every layer:

    - a layer with ``N_l <= keep_min`` stays dense (removes 0);
    - a layer that would keep fewer than ``keep_min`` keeps exactly ``keep_min``
      (``s_l = 1 - keep_min / N_l``);
    - the surplus those clamps free up goes to the other layers in proportion to their
      current counts (their sparsities are rescaled by one common factor), so the total count
      and hence the overall target are unchanged; a rescaled layer that now breaks the floor is
      clamped too, and the step repeats until stable. If none of the other layers removes
      anything, the surplus is spread in proportion to their sizes (uniform sparsity).

    The result is rounded by largest remainder, so its total equals ``sum(counts)`` exactly.
    Counts that already respect the floor are returned unchanged. ``sigma * total`` is taken
    with ``sigma`` as written in decimal (``0.07 * 100`` is 7, not 8).

    Args:
        counts: weights to remove per layer, e.g. from the ``global`` allocation.
        shapes: weight shape of each prunable layer, keyed like ``counts``.
        sigma: minimum kept weights per layer, as a fraction of all prunable weights, in
            ``[0, 1)``.

    Returns:
        Re-balanced number of weights to remove from each layer, in the order of ``shapes``.

    Raises:
        InvalidOptionError: ``sigma`` outside ``[0, 1)``; ``counts`` missing a layer or outside
            ``[0, N_l]``; or the total count cannot be removed while every layer keeps
            ``keep_min`` (the message gives the highest reachable target).

    Example:
        >>> minimum_threshold({"a": 95, "b": 5}, {"a": (100,), "b": (100,)}, 0.05)
        {'a': 90, 'b': 10}
    """
    sizes = layer_sizes(shapes)
    removed = _check_counts(counts, shapes, sizes)
    total = int(sizes.sum())
    keep_min = _keep_min(sigma, total)
    cap = np.maximum(sizes - keep_min, 0)
    budget = int(removed.sum())
    if budget > int(cap.sum()):
        raise InvalidOptionError(
            f"sparsity={budget / total:.6f} is not reachable with the minimum threshold "
            f"sigma={sigma} (every layer keeps at least {keep_min} weights); the highest "
            f"reachable target is {highest_reachable(int(cap.sum()), total)}"
        )
    if np.all(removed <= cap):
        return as_dict(shapes, removed)
    return as_dict(shapes, apportion(_rebalance(removed, sizes, cap, budget), cap, budget))


def most_removable(shapes: Mapping[str, tuple[int, ...]], sigma: float) -> int:
    """The most weights ``minimum_threshold`` lets an allocation remove, all layers together.

    Every layer keeps ``ceil(sigma * total)`` weights (all of them when it has fewer), so a
    search over removal counts (an effective target's bisection) stops here rather than asking
    for a count the floor refuses.

    Example:
        >>> most_removable({"a": (100,), "b": (3,)}, 0.05)
        94
    """
    sizes = layer_sizes(shapes)
    return int(np.maximum(sizes - _keep_min(sigma, int(sizes.sum())), 0).sum())


def _keep_min(sigma: float, total: int) -> int:
    """Weights every layer keeps: ``ceil(sigma * total)``, ``sigma`` as written in decimal."""
    return math.ceil(_check_sigma(sigma) * total)


def _rebalance(removed: np.ndarray, sizes: np.ndarray, cap: np.ndarray, budget: int) -> np.ndarray:
    """Real-valued counts: clamped layers at ``cap``, the others rescaled to fill ``budget``."""
    fixed = removed > cap
    ideal = removed.astype(np.float64)
    while True:
        free = ~fixed
        remaining = budget - float(cap[fixed].sum())
        weights = removed[free].astype(np.float64)
        if weights.sum() <= 0:
            weights = sizes[free].astype(np.float64)
        ideal[fixed] = cap[fixed]
        if weights.sum() <= 0:  # nothing left to rescale: the clamped layers hold the budget
            return ideal
        ideal[free] = remaining * weights / weights.sum()
        over = free & (ideal > cap)
        if not over.any():
            return ideal
        fixed |= over


def _check_sigma(sigma: float) -> Fraction:
    """``sigma`` as an exact fraction of its decimal spelling, checked to be in ``[0, 1)``."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"sigma={sigma!r} must be a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise InvalidOptionError(f"sigma={sigma} must be in [0, 1)")
    return Fraction(repr(value))


def _check_counts(
    counts: Mapping[str, int], shapes: Mapping[str, tuple[int, ...]], sizes: np.ndarray
) -> np.ndarray:
    """``counts`` in the order of ``shapes`` (int64), each checked to be in ``[0, N_l]``."""
    missing = [name for name in shapes if name not in counts]
    if missing:
        raise InvalidOptionError(f"no counts for layers {', '.join(map(repr, missing))}")
    removed = np.array([int(counts[name]) for name in shapes], dtype=np.int64)
    for name, c, n in zip(shapes, removed, sizes, strict=True):
        if not 0 <= c <= n:
            raise InvalidOptionError(f"count {c} of layer {name!r} must be in [0, {n}]")
    return removed
