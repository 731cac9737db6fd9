"""Structured filter pruning: remove the lowest-scoring dependency groups, then compact.

L1-norm filter pruning (Li et al., as compared by Wang et al., PAPERS.md section 3): a unit is
scored by the mean |w| of its filter; a dependency group (``groups``: a conv's channel with its
BatchNorm and the next layers' inputs, or every member of a residual sum) by the mean |w| over all
its members' filters, so the members of a residual sum are removed together or not at all. The
lowest fraction is removed per layer (``scope="layer"``: the groups sharing the same filters, never
all of them) or over the whole network (``scope="global"``: scores divided by their layer's mean so
layers compare). The removed units are zeroed (the ``masked`` model), then compaction cuts them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.errors import InvalidOptionError
from onnxprune.model import DEFAULT_MAX_BYTES, ModelSource, load_model
from onnxprune.options import SCOPES
from onnxprune.pruners.criteria import FilterStats
from onnxprune.pruners.prune import name_filter
from onnxprune.pruners.registry import CRITERIA
from onnxprune.structured.blocked import BlockedGroup, blocked_groups
from onnxprune.structured.compact import CompactResult, Workspace, compact_workspace
from onnxprune.structured.groups import Groups
from onnxprune.structured.surgery import filter_stats, write_back, zero


@dataclass(frozen=True)
class StructuredResult:
    """A structured-pruned model.

    Attributes:
        model: the compacted model.
        masked: the same pruning as zeros in the original shapes (same outputs as ``model``).
        units: (kept, total) units chosen per layer, keyed by its weight name.
        compaction: what compaction of ``masked`` removed.
        blocked: the groups that had to stay whole (a graph output, an op structured pruning
            cannot follow, a shared weight), with the layers they hold and why.
        warnings: one line each.
    """

    model: onnx.ModelProto
    masked: onnx.ModelProto
    units: dict[str, tuple[int, int]]
    compaction: CompactResult
    blocked: tuple[BlockedGroup, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON form: units kept of each layer, what compaction removed, parameters, warnings."""
        c = self.compaction
        return {
            "units": {name: list(kept_total) for name, kept_total in self.units.items()},
            "removed": dict(c.removed),
            "params_before": c.params_before,
            "params_after": c.params_after,
            "warnings": list(self.warnings),
            "blocked": [group.to_dict() for group in self.blocked],
        }


def structured_prune(
    model: ModelSource,
    *,
    sparsity: float,
    criterion: str = "l1",
    scope: str = "layer",
    round_to: int = 1,
    seed: int = 0,
    layers: str | None = None,
    exclude: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> StructuredResult:
    """Remove ``sparsity`` of the prunable units (dependency groups) of ``model``.

    Per layer, a layer keeps ``ceil((1 - sparsity) * n)`` of its ``n`` groups; globally the
    lowest ``sparsity`` of all groups go, at least one staying per layer. Either way the kept
    count of each layer is rounded up to a multiple of ``round_to`` (at most ``n``). Groups the
    surgery cannot follow (graph outputs, unknown ops, shared weights) always stay, and so do
    groups with a filter whose weight name ``layers`` (a regex) does not match or ``exclude``
    matches: excluding a residual member keeps its whole sum.

    Raises:
        InvalidOptionError: sparsity outside [0, 1), unknown criterion or scope, round_to < 1,
            a bad expression, or expressions that leave nothing to prune.
    """
    if not 0 <= sparsity < 1:
        raise InvalidOptionError(f"sparsity={sparsity} must be in [0, 1)")
    if criterion not in CRITERIA:
        raise InvalidOptionError(f"criterion {criterion!r} must be one of {sorted(CRITERIA)}")
    if scope not in SCOPES:
        raise InvalidOptionError(f"scope {scope!r} must be one of {list(SCOPES)}")
    if round_to < 1:
        raise InvalidOptionError(f"round_to={round_to} must be at least 1")
    chosen = name_filter(layers, exclude)
    ws = Workspace.of(load_model(model, max_bytes=max_bytes))
    groups = ws.groups
    stats = FilterStats(*filter_stats(groups, ws.arrays))
    scores = CRITERIA[criterion].fn(stats, np.random.default_rng(seed))
    fixed = groups.blocked | (stats.count == 0)
    for s in groups.filters:
        if not chosen(s.name):
            fixed[groups.of(s.tensor)] = True
    if (layers is not None or exclude is not None) and fixed.all():
        raise InvalidOptionError("--layers/--exclude leave no prunable unit to prune")
    choose = _per_layer if scope == "layer" else _global
    drop = choose(scores, _layers(groups), fixed, sparsity, round_to)
    zero(groups, drop, ws.arrays)
    masked = copy.deepcopy(ws.model)
    write_back(masked, ws.arrays)
    units = {}
    for s in groups.filters:  # the layers with units it could remove
        labels = groups.of(s.tensor)
        if not fixed[labels].all():
            units[s.name] = (int((~drop[labels]).sum()), int(labels.size))
    result = compact_workspace(ws)
    return StructuredResult(result.model, masked, units, result, blocked_groups(groups))


def _layers(groups: Groups) -> list[np.ndarray]:
    """The groups of each layer: groups sharing the same filters (a residual sum's are one)."""
    owners: list[list[int]] = [[] for _ in range(groups.count)]
    for i, s in enumerate(groups.filters):
        for g in np.unique(groups.of(s.tensor)):
            owners[g].append(i)
    by_key: dict[tuple[int, ...], list[int]] = {}
    for g, key in enumerate(owners):
        if key:
            by_key.setdefault(tuple(key), []).append(g)
    return [np.array(members) for members in by_key.values()]


def _kept(n: int, sparsity: float, round_to: int) -> int:
    """Units a layer of ``n`` keeps: ``ceil((1 - sparsity) * n)`` up to a multiple of round_to."""
    keep = math.ceil(round((1 - sparsity) * n, 9))
    return min(n, max(1, round_to * math.ceil(keep / round_to)))


def _per_layer(
    scores: np.ndarray, layers: list[np.ndarray], fixed: np.ndarray, sparsity: float, round_to: int
) -> np.ndarray:
    drop = np.zeros(scores.size, bool)
    for members in layers:
        free = members[~fixed[members]]
        k = min(members.size - _kept(members.size, sparsity, round_to), free.size)
        drop[free[np.argsort(scores[free], kind="stable")[:k]]] = True
    return drop


def _global(
    scores: np.ndarray, layers: list[np.ndarray], fixed: np.ndarray, sparsity: float, round_to: int
) -> np.ndarray:
    norm = scores.astype(np.float64)
    layer_of = np.full(scores.size, -1)
    for i, members in enumerate(layers):
        mean = norm[members].mean()
        if mean > 0:
            norm[members] = norm[members] / mean
        layer_of[members] = i
    free = np.flatnonzero((layer_of >= 0) & ~fixed)
    left = [members.size for members in layers]
    target = round(sparsity * free.size)
    drop = np.zeros(scores.size, bool)
    for g in free[np.argsort(norm[free], kind="stable")]:
        if target == 0:
            break
        if left[layer_of[g]] > 1:
            drop[g] = True
            left[layer_of[g]] -= 1
            target -= 1
    for i, members in enumerate(layers):  # round each layer's kept count up
        extra = min(members.size, round_to * math.ceil(left[i] / round_to)) - left[i]
        dropped = members[drop[members]]
        drop[dropped[np.argsort(-norm[dropped], kind="stable")[:extra]]] = False
    return drop
