"""Helpers shared by the allocations: input checks, layer sizes, and count rounding.

Every allocation first works with real-valued quotas (a density or sparsity per layer), then
turns them into whole numbers of weights to remove with :func:`apportion`, a largest-remainder
rounding that hits the budget ``round(target * total)`` exactly and never leaves ``[0, upper_l]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from onnxprune.errors import InvalidOptionError


def check_target(target: float) -> float:
    """``target`` as a float, checked to be an overall sparsity in ``[0, 1)``.

    Raises:
        InvalidOptionError: ``target`` is not a number, is NaN, or lies outside ``[0, 1)``.
    """
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"sparsity={target!r} must be a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise InvalidOptionError(f"sparsity={target} must be in [0, 1)")
    return value


def layer_sizes(shapes: Mapping[str, tuple[int, ...]]) -> np.ndarray:
    """Number of weights ``N_l`` of each layer, in the order of ``shapes`` (int64).

    Raises:
        InvalidOptionError: a shape has a negative dimension.
    """
    sizes = []
    for name, shape in shapes.items():
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise InvalidOptionError(f"layer {name!r} has shape {tuple(dims)}; dims must be >= 0")
        sizes.append(math.prod(dims))
    return np.asarray(sizes, dtype=np.int64)


def removal_budget(target: float, total: int) -> int:
    """Weights to remove overall: ``round(target * total)``, the budget every allocation hits."""
    return round(target * total)


def highest_reachable(max_removed: int, total: int) -> str:
    """The highest reachable target, rounded *down* to 6 decimals so that asking for it works."""
    return f"{math.floor(max_removed / total * 1e6) / 1e6:.6f}" if total else "0"


def apportion(ideal: np.ndarray, upper: np.ndarray, budget: int) -> np.ndarray:
    """Whole counts near ``ideal`` that add up to ``budget``, each within ``[0, upper_l]``.

    Largest-remainder (Hamilton) rounding: clip ``ideal`` to ``[0, upper]``, take the floors,
    then give the missing units one each to the layers with the largest fractional parts (or,
    when the floors overshoot, take them from the smallest). When the clipped ideals already add
    up to within one unit per layer of ``budget``, every count is the floor or the ceiling of its
    ideal. Ties go to the earlier layer, so the result is deterministic.

    Args:
        ideal: real-valued counts, one per layer.
        upper: the most each layer may lose (int), e.g. its size ``N_l``.
        budget: the exact sum wanted; ``0 <= budget <= upper.sum()``.

    Returns:
        int64 counts, one per layer.

    Raises:
        ValueError: ``budget`` is outside ``[0, upper.sum()]`` (a bug in the caller).
    """
    upper = np.asarray(upper, dtype=np.int64)
    if not 0 <= budget <= int(upper.sum()):
        raise ValueError(f"budget {budget} outside [0, {int(upper.sum())}]")
    x = np.clip(np.nan_to_num(np.asarray(ideal, dtype=np.float64)), 0.0, upper)
    counts = np.minimum(np.floor(x).astype(np.int64), upper)
    frac = x - counts
    missing = budget - int(counts.sum())
    while missing > 0:
        room = np.flatnonzero(counts < upper)
        take = room[np.argsort(-frac[room], kind="stable")][:missing]
        counts[take] += 1
        frac[take] = 0.0
        missing -= take.size
    while missing < 0:
        have = np.flatnonzero(counts > 0)
        take = have[np.argsort(frac[have], kind="stable")][:-missing]
        counts[take] -= 1
        frac[take] = 1.0
        missing += take.size
    return counts


def as_dict(shapes: Mapping[str, tuple[int, ...]], counts: np.ndarray) -> dict[str, int]:
    """Counts keyed by layer name, as plain ints, in the order of ``shapes``."""
    return {name: int(c) for name, c in zip(shapes, counts, strict=True)}
