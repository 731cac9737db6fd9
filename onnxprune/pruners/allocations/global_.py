"""Global allocation: one threshold over the scores of all layers (Global MP)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners._cut import Cut, common_dtype, find_cut, keep_above
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
    would: by layer order, then by flat (C-order) index. The threshold is found by selection in
    linear time (``_cut.find_cut``), not a full sort, in the scores' own float dtype.

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
    counts, _, _ = _global_cut(shapes, target, scores)
    return as_dict(shapes, counts)


def global_masks(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``masks_from_counts(scores, global_(shapes, target, scores))`` with a single selection.

    Once the global cut value is known, each layer's mask is one comparison with it (its share
    of the ties at the cut goes by flat index), so no layer needs a selection of its own.
    The masks are keyed and shaped like ``scores``, in the order of ``shapes``.

    Raises:
        InvalidOptionError: as :func:`global_`.

    Example:
        >>> s = {"a": np.array([0.1, 0.9, 0.5]), "b": np.array([0.2, 0.05])}
        >>> global_masks({"a": (3,), "b": (2,)}, 0.6, s)["a"]
        array([False,  True,  True])
    """
    counts, cut, flat = _global_cut(shapes, target, scores)
    masks = {}
    for i, (name, f) in enumerate(zip(shapes, flat, strict=True)):
        if cut is None:
            keep = f != -np.inf
        else:
            keep = keep_above(f, cut.value, int(counts[i] - cut.below[i]), int(cut.equal[i]))
        masks[name] = keep.reshape(np.shape(scores[name]))
    return masks


def _global_cut(
    shapes: Mapping[str, tuple[int, ...]], target: float, scores: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, Cut | None, list[np.ndarray]]:
    """Counts per layer, the cut (None when nothing is removed), and the flat scores."""
    t = check_target(target)
    sizes = layer_sizes(shapes)
    flat = _flat_scores(shapes, sizes, scores)
    budget = removal_budget(t, int(sizes.sum()))
    if budget == 0:
        return np.zeros(sizes.size, dtype=np.int64), None, flat
    cut = find_cut(flat, budget)
    return cut.removed(budget), cut, flat


def _flat_scores(
    shapes: Mapping[str, tuple[int, ...]], sizes: np.ndarray, scores: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Each layer's scores flat, checked, in one float dtype that orders them all exactly.

    No copy is made when the layers already share a float dtype.
    """
    missing = [name for name in shapes if name not in scores]
    if missing:
        raise InvalidOptionError(f"no scores for layers {', '.join(map(repr, missing))}")
    given = [np.asarray(scores[name]) for name in shapes]
    dtype = common_dtype(given)
    flat = []
    for name, size, values in zip(shapes, sizes, given, strict=True):
        values = values.astype(dtype, copy=False).reshape(-1)
        if values.size != size:
            raise InvalidOptionError(
                f"scores of layer {name!r} have {values.size} values; the layer has {size} weights"
            )
        if values.size and np.isnan(values.max()):
            raise InvalidOptionError(f"scores of layer {name!r} contain NaN")
        flat.append(values)
    return flat
