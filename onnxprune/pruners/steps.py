"""The steps of an effective target's search: their masks, and their analyses, incremental.

A step removes the ``k`` lowest-ranked weights (``ranking.Ranking``, ``RankedMasks``) and
analyses the masked model. Between two steps only the weights ranked between their counts change,
so where the graph allows (``graph.incremental.unsupported``) the analysis follows those changes
alone (``graph.incremental.MaskedChannels``); elsewhere each step analyses the masked model whole.
The answer is the same either way: the effective sparsity ``sparsity_report`` gives for the masks.
With nested masks the search interpolates (``targets.search_nested``), else it bisects; both find
the same count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from onnxprune.graph.build import ConnectivityGraph
from onnxprune.graph.cuts import cut_by
from onnxprune.graph.incremental import REBUILD, MaskedChannels, unsupported
from onnxprune.pruners.ranking import Ranking
from onnxprune.pruners.rows import RowGroups
from onnxprune.pruners.targets import Bisection, bisect_effective, direct_bound, search_nested

Masks = dict[str, np.ndarray]
Changes = Callable[[int, int], Mapping[str, np.ndarray]]
"""Per weight, the flat indices whose mask differs between the steps at two counts."""


class Plan(Protocol):
    """What a prune's plan offers here (``pruners.prune``'s plan of the selected layers)."""

    graph: ConnectivityGraph
    level: str
    total: int  # all prunable weights
    zeros_outside: int  # zeros of the weights not selected

    def effective(self, masks: Mapping[str, np.ndarray]) -> float:
        """Effective sparsity of the model with ``masks`` applied (a full analysis)."""
        ...


@dataclass(frozen=True)
class RankedMasks:
    """``ranked(k)``: the masks with ``k`` weights removed in score order, per the allocation.

    Attributes:
        ranking: the score order.
        groups: where weights compete once each layer's count is known (layers or rows).
        scores: the scores the order was made of (for row groups).
        counts: each layer's removals at ``k`` (the allocation's, or the global order's).
        floored: ``counts`` are re-balanced by a minimum threshold.
    """

    ranking: Ranking
    groups: RowGroups
    scores: Mapping[str, np.ndarray]
    counts: Callable[[int], dict[str, int]]
    floored: bool

    @property
    def nested(self) -> bool:
        """Each count's removals hold those of every smaller count.

        They are the global order's prefixes themselves (no re-balancing, no rows), so effective
        sparsity grows with ``k``.
        """
        return self.ranking.across_layers and not self.floored and self.groups.rows is None

    def __call__(self, k: int) -> Masks:
        """The masks (consumed layout, ``True`` = kept) with ``k`` weights removed."""
        if self.nested:
            return self.ranking.global_masks(k)
        return self.groups.regroup(self.scores, self.ranking.masks(self.counts(k)))

    def changes(self, old: int, new: int) -> dict[str, np.ndarray]:
        """Where the masks of ``old`` and ``new`` differ, per layer; not for row groups."""
        if self.nested:
            return self.ranking.global_changes(old, new)
        return self.ranking.layer_changes(self.counts(old), self.counts(new))


def search_effective(
    plan: Plan, ranked: RankedMasks, bounds: tuple[int, int], target: float
) -> Bisection:
    """The most removals whose effective sparsity stays at most ``target``.

    With nested masks the bracket starts at ``targets.direct_bound`` (past it direct, hence
    effective, sparsity is over the target), or one short of the first count whose empty
    layers cut every path (``first_cut``: effective sparsity 1 there, known without an
    analysis), and the search interpolates; else it bisects.

    Args:
        plan: the prune's plan.
        ranked: the masks at each count.
        bounds: the fewest (forced) and the most removals the search may take.
        target: the effective sparsity not to exceed.
    """
    low, top = bounds
    steps = EffectiveSteps(plan, ranked, ranked.changes if ranked.groups.rows is None else None)
    if not ranked.nested:
        return bisect_effective(steps, low, top, target)
    size = sum(math.prod(shape) for shape in ranked.ranking.shapes)
    high = max(min(top, direct_bound(target, plan.total, plan.zeros_outside)), low)
    if high > low:  # past a layer collapse that cuts every path, effective sparsity is 1
        high = max(min(high, first_cut(plan.graph, ranked.ranking, high) - 1), low)
    # What low removes, and the zeros outside.
    direct_low = (low + plan.zeros_outside) / plan.total if plan.total else 0.0
    return search_nested(steps, low, high, target, size, direct_low)


def first_cut(graph: ConnectivityGraph, ranking: Ranking, high: int) -> int:
    """The fewest removals in the global order whose empty layers cut every path (``graph.cuts``).

    Effective sparsity is exactly 1 from there on, so no search needs to analyse those counts.
    Only layers emptied by ``high`` removals can take part; they empty in the order of their
    highest scores, and the first whose emptying completes a cut gives the count.

    Args:
        graph: the model's connectivity graph.
        ranking: the score order (across layers).
        high: the most removals the search looks at.

    Returns:
        That count, or ``high + 1`` when ``high`` removals cut no path known this way.
    """
    removed = ranking.global_counts(high)
    empty = [
        name
        for name, shape in zip(ranking.names, ranking.shapes, strict=True)
        if 0 < math.prod(shape) == removed[name]
    ]
    if not cut_by(graph, empty):
        return high + 1
    order = ranking.emptying_order(empty)
    first = next(i for i in range(len(order)) if cut_by(graph, order[: i + 1]))
    return ranking.emptied_at(order[first])


class EffectiveSteps:
    """``steps(k)``: the effective sparsity with ``masks_at(k)`` applied, step after step.

    The state is the last step's count and masked graph; the first step builds it whole.
    """

    def __init__(
        self, plan: Plan, masks_at: Callable[[int], Masks], changes: Changes | None
    ) -> None:
        """Steps of ``plan``'s search.

        Args:
            plan: the prune's plan.
            masks_at: the masks (consumed layout) with ``k`` weights removed.
            changes: where the masks of two counts differ, without building them; ``None``
                compares the masks themselves (a search whose masks are not prefixes).
        """
        self._plan = plan
        self._masks_at = masks_at
        self._changes = changes
        self._incremental = unsupported(plan.graph, plan.level) is None
        self._channels: MaskedChannels | None = None
        self._last: tuple[int, Masks | None] = (0, None)

    def __call__(self, k: int) -> float:
        """The effective sparsity at ``k`` removed."""
        if not self._incremental:
            return self._plan.effective(self._masks_at(k))
        last, masks = self._last
        if self._channels is None:
            masks = self._masks_at(k)
            self._channels = MaskedChannels(self._plan.graph, masks)
        elif self._changes is not None and abs(k - last) * REBUILD >= self._channels.size:
            self._channels.reset(self._masks_at(k))  # most layers would be rebuilt anyway
        elif self._changes is not None:
            self._channels.toggle(self._changes(last, k))
        else:
            now = self._masks_at(k)
            self._channels.toggle({name: np.flatnonzero(now[name] != masks[name]) for name in now})
            masks = now
        self._last = (k, masks if self._changes is None else None)
        return self._channels.effective_sparsity()
