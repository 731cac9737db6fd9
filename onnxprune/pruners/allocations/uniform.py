"""Uniform allocation: every layer loses the same fraction of its weights."""

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


@allocation("uniform", "every layer at the target sparsity, s_l = t (arXiv 2107.02306)")
def uniform(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Uniform layerwise sparsity ``s_l = t`` (Vysogorets & Kempe, arXiv 2107.02306; PAPERS.md 1).

    The simplest baseline: each layer loses ``t * N_l`` weights, rounded by largest remainder so
    that the counts add up to ``round(t * total)``. It prunes small layers (often the first and
    last) as hard as large ones, which is why ``uniform_plus``, ``erk`` and ``igq`` exist.

    Args:
        shapes: weight shape of each prunable layer, in graph order.
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: unused (the quotas depend on the shapes only).

    Returns:
        Number of weights to remove from each layer.

    Raises:
        InvalidOptionError: ``target`` outside ``[0, 1)``.

    Example:
        >>> uniform({"a": (10, 10), "b": (10, 5)}, 0.5, {})
        {'a': 50, 'b': 25}
    """
    t = check_target(target)
    sizes = layer_sizes(shapes)
    budget = removal_budget(t, int(sizes.sum()))
    return as_dict(shapes, apportion(t * sizes, sizes, budget))
