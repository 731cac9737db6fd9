"""Uniform+ allocation: uniform, but the first layer dense and the last at most 80% sparse."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations._quota import (
    apportion,
    as_dict,
    check_target,
    highest_reachable,
    layer_sizes,
    removal_budget,
)
from onnxprune.pruners.registry import allocation

LAST_LAYER_CAP = 0.8
"""Highest sparsity uniform+ gives the last layer."""


@allocation("uniform_plus", "uniform, first layer dense, last layer <= 80% (arXiv 2107.02306)")
def uniform_plus(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Uniform+ quotas (Gale et al. 2019, as used by Vysogorets & Kempe, arXiv 2107.02306).

    PAPERS.md section 1: the first layer stays dense, the last layer's sparsity is at most 0.8,
    and every other layer gets the same sparsity ``s``, re-balanced so that the overall target
    ``t`` is hit: ``s = t * total / (sum of N_l over all layers but the first)``, given to the
    last layer too while ``s <= 0.8``. Above that the last layer is capped at 0.8 and the middle
    layers share the rest, ``s_mid = (t * total - 0.8 * N_last) / M`` with ``M`` their weight
    count. The first layer sees the raw input and the last decides the output, and both are
    small, so pruning them hurts most and saves least.

    With a single layer, that layer is treated as the *last* one: it gets ``s = t`` with the
    0.8 cap (keeping it dense would make every target above 0 unreachable). With two layers the
    first is dense and the last carries the whole budget, up to 0.8.

    In whole weights the last layer loses at most ``floor(0.8 * N_last)``.

    Args:
        shapes: weight shape of each prunable layer, in graph order (first = input side).
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: unused (the quotas depend on the shapes only).

    Returns:
        Number of weights to remove from each layer.

    Raises:
        InvalidOptionError: ``target`` outside ``[0, 1)``, or too high to reach under the two
            rules (for example, a first layer holding most of the weights); the message gives
            the highest reachable target.

    Example:
        >>> uniform_plus({"first": (4, 10), "mid": (10, 10), "last": (10, 10)}, 0.5, {})
        {'first': 0, 'mid': 60, 'last': 60}
    """
    t = check_target(target)
    sizes = layer_sizes(shapes)
    total = int(sizes.sum())
    budget = removal_budget(t, total)
    if sizes.size == 0:
        return {}
    upper = sizes.copy()
    upper[-1] = (4 * int(sizes[-1])) // 5  # floor(0.8 * N_last) in exact integer arithmetic
    if sizes.size > 1:
        upper[0] = 0
    if budget > int(upper.sum()):
        raise InvalidOptionError(
            f"sparsity={t} is not reachable with uniform+ (first layer dense, last layer at most "
            f"{LAST_LAYER_CAP:.0%} sparse); the highest reachable target is "
            f"{highest_reachable(int(upper.sum()), total)}"
        )
    return as_dict(shapes, apportion(_ideal(sizes, t * total), upper, budget))


def _ideal(sizes: np.ndarray, removed: float) -> np.ndarray:
    """Real-valued removals: first layer 0 (if there are two layers or more), the rest uniform."""
    n = sizes.astype(np.float64)
    prunable = np.ones(n.size, dtype=bool)
    if n.size > 1:
        prunable[0] = False
    pool = n[prunable].sum()
    s = removed / pool if pool > 0 else 0.0
    if s <= LAST_LAYER_CAP:
        return np.where(prunable, s * n, 0.0)
    middle = prunable.copy()
    middle[-1] = False
    ideal = np.zeros_like(n)
    ideal[-1] = LAST_LAYER_CAP * n[-1]
    rest = n[middle].sum()
    if rest > 0:
        ideal[middle] = (removed - ideal[-1]) / rest * n[middle]
    return ideal
