"""Global allocation: one threshold over the scores of all layers (Global MP)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations._quota import (
    as_dict,
    check_target,
    layer_sizes,
    removal_budget,
)
from onnxprune.pruners.registry import allocation


@allocation("global", "one threshold over all layers' scores: Global MP (arXiv 2209.14624)")
def global_(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Global pruning (Gupta et al., arXiv 2209.14624; PAPERS.md section 2).

    One threshold over the scores of all prunable weights: the ``k = round(t * total)``
    lowest-scored weights are removed wherever they are, and this returns how many fall in each
    layer. With the magnitude score it is Global MP, which the paper finds as good as or better
    than more complex allocations; wrap it with
    :func:`~onnxprune.pruners.allocations.minimum_threshold.minimum_threshold` to avoid layer
    collapse. Already-pruned weights score ``-inf`` and so go first.

    Ties at the threshold are broken as a stable sort of the concatenated flattened scores
    would: by layer order, then by flat (C-order) index. The threshold is found with a linear
    ``np.partition``, not a full sort.

    Args:
        shapes: weight shape of each prunable layer, in graph order.
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: importance of every weight (higher = keep), keyed like ``shapes``, each with
            ``N_l`` values (flattened in C order).

    Returns:
        Number of weights to remove from each layer; they add up to ``round(t * total)``.

    Raises:
        InvalidOptionError: ``target`` outside ``[0, 1)``; a layer without scores, with the
            wrong number of scores, or with NaN scores.

    Example:
        >>> s = {"a": np.array([0.1, 0.9, 0.5]), "b": np.array([0.2, 0.05])}
        >>> global_({"a": (3,), "b": (2,)}, 0.6, s)
        {'a': 1, 'b': 2}
    """
    t = check_target(target)
    sizes = layer_sizes(shapes)
    flat = _flat_scores(shapes, sizes, scores)
    budget = removal_budget(t, int(sizes.sum()))
    counts = np.zeros(sizes.size, dtype=np.int64)
    if budget == 0:
        return as_dict(shapes, counts)
    everything = np.concatenate(flat)
    threshold = np.partition(everything, budget - 1)[budget - 1]
    below = np.array([np.count_nonzero(f < threshold) for f in flat], dtype=np.int64)
    ties_left = budget - int(below.sum())
    for i, f in enumerate(flat):
        take = min(ties_left, int(np.count_nonzero(f == threshold)))
        counts[i] = below[i] + take
        ties_left -= take
    return as_dict(shapes, counts)


def _flat_scores(
    shapes: Mapping[str, tuple[int, ...]], sizes: np.ndarray, scores: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Each layer's scores as a flat float64 array, checked against the layer's size."""
    missing = [name for name in shapes if name not in scores]
    if missing:
        raise InvalidOptionError(f"no scores for layers {', '.join(map(repr, missing))}")
    flat = []
    for name, size in zip(shapes, sizes, strict=True):
        values = np.asarray(scores[name], dtype=np.float64).reshape(-1)
        if values.size != size:
            raise InvalidOptionError(
                f"scores of layer {name!r} have {values.size} values; the layer has {size} weights"
            )
        if np.isnan(values).any():
            raise InvalidOptionError(f"scores of layer {name!r} contain NaN")
        flat.append(values)
    return flat
