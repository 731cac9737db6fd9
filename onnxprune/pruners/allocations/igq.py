"""Ideal gas quotas (IGQ): layers as coupled cylinders under one pressure ``F``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.pruners.allocations._quota import (
    apportion,
    as_dict,
    check_target,
    layer_sizes,
    removal_budget,
)
from onnxprune.pruners.registry import allocation


@allocation("igq", "ideal gas quotas: d_l = 1 / (F * N_l + 1) (arXiv 2107.02306)")
def igq(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Ideal gas quotas (Vysogorets & Kempe, arXiv 2107.02306; PAPERS.md section 1).

    Each layer is a cylinder of volume ``N_l`` compressed by one common pressure ``F``; its
    density is ``d_l = 1 / (F * N_l + 1)``. The kept count ``sum_l N_l / (F * N_l + 1)`` falls
    strictly from ``total`` (``F = 0``) towards 0, so the ``F >= 0`` at which it equals
    ``(1 - t) * total`` is unique; it is found with Brent's method. Large layers are pruned
    more, and at extreme sparsity every layer keeps about ``1 / F`` weights, so no layer is
    wiped out while the others still have weights (the paper's reason to prefer IGQ).

    Args:
        shapes: weight shape of each prunable layer, in graph order.
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: unused (the quotas depend on the shapes only).

    Returns:
        Number of weights to remove from each layer; they add up to ``round(t * total)``.

    Raises:
        InvalidOptionError: ``target`` outside ``[0, 1)``.

    Example:
        >>> igq({"big": (100, 100), "small": (10, 10)}, 0.5, {})
        {'big': 5049, 'small': 1}
    """
    t = check_target(target)
    sizes = layer_sizes(shapes)
    total = int(sizes.sum())
    budget = removal_budget(t, total)
    pressure = igq_pressure(sizes, (1.0 - t) * total)
    density = 1.0 / (pressure * sizes + 1.0)
    return as_dict(shapes, apportion((1.0 - density) * sizes, sizes, budget))


def igq_pressure(sizes: np.ndarray, kept: float) -> float:
    """The pressure ``F >= 0`` at which ``sum_l N_l / (F * N_l + 1)`` equals ``kept``.

    Args:
        sizes: ``N_l`` of each layer.
        kept: weights to keep overall, in ``(0, sum N_l]``.
    """
    from scipy.optimize import brentq  # imported here: scipy.optimize is slow to import

    n = np.asarray(sizes, dtype=np.float64)
    n = n[n > 0]
    if n.size == 0 or kept >= n.sum():
        return 0.0

    def excess(f: float) -> float:
        return float(np.sum(n / (f * n + 1.0))) - kept

    # Each term is below 1/F, so at F = L / kept the sum is below kept: a sign change.
    high = n.size / kept
    return float(brentq(excess, 0.0, high, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=1000))
