"""Wanda's comparison group: weights compete within their output row, rows on one scale.

Sun et al., "A Simple and Effective Pruning Approach for Large Language Models" (arXiv
2306.11695, section 3 and table 5): with the activation score ``|W_ij| * ||X_j||_2``, comparing
weights per output row and pruning every row to the layer's target works far better than a
threshold over the layer. Across layers the raw score is not comparable at all (it grows with the
number of positions the input has: 512 per sample in a 1-D conv, 1 in a last Gemm), so a global
threshold on it empties whole layers. A score registered ``per_output`` is therefore compared
row by row, and allocations that compare layers see each row's scores over their root mean
square.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.pruners.layer_views import output_rows
from onnxprune.pruners.masks import share
from onnxprune.pruners.registry import get_score

if TYPE_CHECKING:
    from onnxprune.graph.build import Layer


@dataclass(frozen=True)
class RowGroups:
    """Where weights compete once each layer's count is known: the layer, or each output row.

    A score registered ``per_output`` (Wanda's activation score) compares the weights of one
    output row only: each row loses its share of the layer's count (:func:`row_masks`), and
    allocations that compare layers (``global``) see each row's scores divided by their root
    mean square, so that rows and layers are on one scale (the raw score grows with the number
    of positions a layer's input has and with its output's magnitude).
    """

    rows: dict[str, np.ndarray] | None

    @staticmethod
    def of(layers: Mapping[str, Layer], names: Sequence[str], score: str | None) -> RowGroups:
        """The groups of ``score`` over the layers ``names`` (``None``: external scores)."""
        if score is None or not get_score(score).per_output:
            return RowGroups(None)
        return RowGroups({name: output_rows(layers[name], layers[name].shape) for name in names})

    def normalised(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each row's scores over their root mean square (rows of zeros stay zero)."""
        if self.rows is None:
            return scores
        out = {}
        for name, values in scores.items():
            values = np.asarray(values, np.float64)
            ids = self.rows[name].reshape(-1)
            sizes = np.maximum(np.bincount(ids), 1)
            rms = np.sqrt(np.bincount(ids, weights=np.square(values).reshape(-1)) / sizes)
            scale = np.where(rms > 0, rms, 1.0)[ids].reshape(values.shape)
            out[name] = values / scale
        return out

    def regroup(
        self, scores: Mapping[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """``masks``' count per layer, chosen row by row (``masks`` itself for layers)."""
        if self.rows is None:
            return masks
        counts = {name: mask.size - int(np.count_nonzero(mask)) for name, mask in masks.items()}
        return row_masks(scores, counts, self.rows)


def row_masks(
    scores: Mapping[str, np.ndarray],
    counts: Mapping[str, int],
    rows: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per layer, remove ``counts[name]`` weights, each output row losing its share.

    The comparison group of Wanda (Sun et al., arXiv 2306.11695, section 3): weights compete
    only with the other weights of their output row, and every row is pruned to the layer's
    target. Already-pruned weights (``-inf``) are removed first and count towards their row's
    share; the rest of the count is shared among the rows by the weights each still has
    (:func:`share`), so the layer loses exactly ``counts[name]`` (at least its pruned ones).

    Args:
        scores: importance (higher = keep) keyed by layer name.
        counts: weights to remove per layer.
        rows: for each layer, the output row of every weight (ints shaped like its scores).

    Returns:
        ``bool`` masks keyed like ``scores`` (``True`` = keep); ties: lower index first.
    """
    masks = {}
    for name, values in scores.items():
        flat = np.asarray(values, np.float64).reshape(-1)
        ids = np.asarray(rows[name]).reshape(-1)
        sizes = np.bincount(ids, minlength=int(ids.max(initial=-1)) + 1)
        floor = np.bincount(ids, weights=flat == -np.inf, minlength=sizes.size).astype(np.int64)
        quota = floor + share(int(counts.get(name, 0)) - int(floor.sum()), sizes - floor)
        order = np.lexsort((np.arange(flat.size), flat, ids))  # by row, then score, then index
        starts = np.cumsum(sizes) - sizes
        rank = np.empty(flat.size, np.int64)
        rank[order] = np.arange(flat.size) - np.repeat(starts, sizes)
        masks[name] = (rank >= quota[ids]).reshape(np.shape(values))
    return masks
