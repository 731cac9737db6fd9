"""Erdos-Renyi-Kernel (ERK) allocation: density proportional to sum(shape) / prod(shape)."""

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


@allocation("erk", "Erdos-Renyi-Kernel: density ~ sum(shape)/prod(shape) (arXiv 2107.02306)")
def erk(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Erdos-Renyi-Kernel quotas (Evci et al., RigL, arXiv 1911.11134; PAPERS.md section 1).

    Layer ``l`` keeps the density ``d_l = k * sum(shape_l) / prod(shape_l)``; for a convolution
    ``[O, C/G, kh, kw]`` that is ``k * (kh + kw + cin + cout) / (kh * kw * cin * cout)`` with
    ``cin = C/G``, for a matmul ``[K, N]`` it is ``k * (K + N) / (K * N)``, and kernels of any
    other rank sum and multiply all their dimensions. ``k`` is solved from the global budget
    ``sum_l d_l * N_l = (1 - t) * total``. A layer whose density would exceed 1 is kept dense
    and ``k`` is re-solved over the rest, until no layer exceeds 1 (capping all offenders at
    once reaches the same fixed point as RigL's one-at-a-time loop, since capping only raises
    ``k``). Wide, thin layers get more density than large square ones; at moderate sparsity
    this leaves almost no gap between direct and effective sparsity.

    Args:
        shapes: weight shape of each prunable layer, in graph order.
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: unused (the quotas depend on the shapes only).

    Returns:
        Number of weights to remove from each layer; they add up to ``round(t * total)``.

    Raises:
        InvalidOptionError: ``target`` outside ``[0, 1)``.

    Example:
        >>> erk({"fc1": (784, 300), "fc2": (300, 100), "fc3": (100, 10)}, 0.5, {})
        {'fc1': 133100, 'fc2': 0, 'fc3': 0}
    """
    t = check_target(target)
    sizes = layer_sizes(shapes)
    total = int(sizes.sum())
    budget = removal_budget(t, total)
    density = erk_densities(shapes, (1.0 - t) * total)
    return as_dict(shapes, apportion((1.0 - density) * sizes, sizes, budget))


def erk_densities(shapes: Mapping[str, tuple[int, ...]], kept: float) -> np.ndarray:
    """ERK densities ``min(1, k * sum(shape_l) / prod(shape_l))`` that keep ``kept`` weights.

    Layers with no weights get density 1 (they have nothing to give).
    """
    sizes = layer_sizes(shapes).astype(np.float64)
    perimeter = np.array([float(sum(int(d) for d in s)) for s in shapes.values()])
    dense = sizes == 0
    while True:
        free = ~dense
        weight = perimeter[free].sum()  # sum over free layers of raw_l * N_l = sum(shape_l)
        if weight <= 0:
            return np.ones_like(sizes)
        k = max(kept - sizes[dense].sum(), 0.0) / weight
        density = np.ones_like(sizes)
        density[free] = k * perimeter[free] / sizes[free]
        over = free & (density > 1.0)
        if not over.any():
            return density
        dense |= over
