"""Score order computed once, so that every removal count of a search is a prefix of it.

An effective target is reached by bisection over the number of removed weights ``k``
(``targets.bisect_effective``), one mask set per step. Selecting the ``k`` lowest scores afresh
at each step (``np.partition`` over all weights, per layer and globally) cost far more than the
connectivity analyses themselves on large models. Here the stable order of each layer's scores
is sorted once, and for the global allocation the stable order of all scores; a step then writes
masks from prefixes, in linear time without selection.

The order is the one ``global_`` and ``masks_from_counts`` use: lowest score first, ties by
layer (graph) order and then flat index; already-pruned weights (``-inf``) first and never back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranking:
    """The stable score order of every layer, and optionally of all layers together.

    Attributes:
        names: the layers, in graph order.
        shapes: the score array shape of each layer.
        orders: per layer, flat indices from lowest to highest score (stable).
        alive: per layer, flat mask of weights not already pruned (score above ``-inf``).
        layers_in_order: for the global order, the layer index of each weight from lowest to
            highest score over all layers (``None`` unless asked for).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    orders: tuple[np.ndarray, ...]
    alive: tuple[np.ndarray, ...]
    layers_in_order: np.ndarray | None = None

    @staticmethod
    def of(scores: Mapping[str, np.ndarray], *, across_layers: bool = False) -> Ranking:
        """The order of ``scores`` (keyed by layer, in graph order).

        Args:
            scores: importance of every weight (higher = keep), ``-inf`` for pruned ones.
            across_layers: also sort all layers together (for ``global_counts``).
        """
        flat = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores.values()]
        layers_in_order = None
        if across_layers and flat:
            order = np.argsort(np.concatenate(flat), kind="stable")
            sizes = np.array([f.size for f in flat], dtype=np.int64)
            layers_in_order = np.repeat(np.arange(len(flat), dtype=np.int32), sizes)[order]
            del order
        return Ranking(
            tuple(scores),
            tuple(np.shape(s) for s in scores.values()),
            tuple(np.argsort(f, kind="stable") for f in flat),
            tuple(f != -np.inf for f in flat),
            layers_in_order,
        )

    def masks(self, counts: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Per layer, the ``counts[name]`` lowest-scored weights removed (``masks_from_counts``).

        Returns:
            Boolean masks shaped like the scores, ``True`` = kept.
        """
        out = {}
        for name, shape, order, alive in zip(
            self.names, self.shapes, self.orders, self.alive, strict=True
        ):
            keep = alive.copy()
            keep[order[: int(counts.get(name, 0))]] = False
            out[name] = keep.reshape(shape)
        return out

    def global_counts(self, k: int) -> dict[str, int]:
        """How many of the ``k`` lowest scores of all layers fall in each layer (``global_``).

        Raises:
            ValueError: the ranking was made without ``across_layers``.
        """
        if self.layers_in_order is None:
            raise ValueError("global_counts needs Ranking.of(..., across_layers=True)")
        counts = np.bincount(self.layers_in_order[: max(k, 0)], minlength=len(self.names))
        return {name: int(c) for name, c in zip(self.names, counts, strict=True)}
