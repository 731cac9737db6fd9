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
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.shapes import fix_input_shapes
from onnxprune.model import DEFAULT_MAX_BYTES, ModelSource, load_model
from onnxprune.options import DEFAULT_RIDGE, SCOPES, check_ridge
from onnxprune.pruners.criteria import FilterStats
from onnxprune.pruners.prune import name_filter
from onnxprune.pruners.registry import CRITERIA
from onnxprune.structured._copies import merge_copies
from onnxprune.structured.blocked import (
    BlockedGroup,
    blocked_groups,
    body_blocks,
    by_reason,
    plural,
)
from onnxprune.structured.compact import CompactResult, Shapes, Workspace, compact_workspace
from onnxprune.structured.groups import Groups
from onnxprune.structured.nests import Nest, choose
from onnxprune.structured.reconstruct import Reconstruction, reconstruct
from onnxprune.structured.rounding import kept, step, steps, widths
from onnxprune.structured.surgery import filter_stats, write_back, zero
from onnxprune.structured.units import model_units


@dataclass(frozen=True)
class StructuredResult:
    """A structured-pruned model, what it removed and how close it came to the target.

    Sparsity is counted in dependency groups, the units pruning chooses (a residual sum's
    channels are one group): ``group_sparsity`` is ``groups_removed / groups_prunable``, where
    the prunable groups are all the groups of the layers that had at least one group free to go
    (a layer whose groups all had to stay is left out: see ``blocked``). Per layer,
    ``layer_sparsity`` is the share of the layer's units removed (``units``).

    Attributes:
        model: the compacted model.
        masked: the same pruning as zeros in the original shapes (same outputs as ``model``).
        units: (kept, total) units chosen per layer, keyed by its weight name, for the layers
            with a unit free to go; counted in the layer's kind of unit (``kinds``): an
            attention projection's heads, not its channels.
        compaction: what compaction of ``masked`` removed.
        blocked: the groups that had to stay whole (a graph output, an op structured pruning
            cannot follow, a shared weight), with the layers they hold and why.
        warnings: one line each: the target missed by more than ``TOLERANCE``, nothing removed.
        sparsity: the target asked for: the fraction of the groups to remove.
        scope: ``"layer"`` or ``"global"``, as asked.
        round_to: each layer kept a multiple of this many columns, as asked
            (``structured.rounding``: a head is its head size of columns).
        groups_removed: dependency groups removed.
        groups_prunable: dependency groups of the layers it could prune.
        reconstruction: with calibration data, the layers re-fit and their output errors.
        kinds: per layer of ``units``, what its units are (``structured.units.KINDS``:
            ``head``, ``neuron``, ``channel``, ``hidden unit``).
        labels: a readable name (the exporter's module, else the node's name) per weight of
            ``units`` and ``blocked`` whose name is not already readable.
        totals: per kind, (kept, total) units of the layers of ``units`` (``heads 8 -> 6``).
    """

    model: onnx.ModelProto
    masked: onnx.ModelProto
    units: dict[str, tuple[int, int]]
    compaction: CompactResult
    blocked: tuple[BlockedGroup, ...]
    warnings: tuple[str, ...] = ()
    sparsity: float = 0.0
    scope: str = "layer"
    round_to: int = 1
    groups_removed: int = 0
    groups_prunable: int = 0
    reconstruction: Reconstruction | None = None
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    totals: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @property
    def group_sparsity(self) -> float | None:
        """The sparsity reached: groups removed / prunable groups (None when none was)."""
        if not self.groups_prunable:
            return None
        return self.groups_removed / self.groups_prunable

    @property
    def layer_sparsity(self) -> dict[str, float]:
        """Per layer of ``units``: the share of its units removed."""
        return {name: (total - kept) / total for name, (kept, total) in self.units.items()}

    def to_dict(self) -> dict:
        """JSON form: target, reached sparsity, units with kinds, labels and totals, blocked."""
        c = self.compaction
        return {
            "sparsity": self.sparsity,
            "scope": self.scope,
            "round_to": self.round_to,
            "group_sparsity": self.group_sparsity,
            "groups_removed": self.groups_removed,
            "groups_prunable": self.groups_prunable,
            "units": {name: list(kept_total) for name, kept_total in self.units.items()},
            "layer_sparsity": self.layer_sparsity,
            "kinds": dict(self.kinds),
            "labels": dict(self.labels),
            "totals": {kind: list(kept_total) for kind, kept_total in self.totals.items()},
            "removed": dict(c.removed),
            "params_before": c.params_before,
            "params_after": c.params_after,
            "macs_before": c.macs_before.macs,
            "macs_after": c.macs_after.macs,
            "nonzero_macs_before": c.macs_before.nonzero_macs,
            "nonzero_macs_after": c.macs_after.nonzero_macs,
            "warnings": list(self.warnings),
            "blocked": [group.to_dict() for group in self.blocked],
            "reconstruction": self.reconstruction and self.reconstruction.to_dict(),
        }


TOLERANCE = 0.05
"""A reached sparsity further than this from the target gets a warning (5 points)."""

MAIN_REASONS = 3
"""How many blocking reasons the nothing-removed warning names."""


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
    calibration: Mapping[str, np.ndarray] | None = None,
    ridge: float = DEFAULT_RIDGE,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> StructuredResult:
    """Remove ``sparsity`` of the prunable units (dependency groups) of ``model``.

    Per layer, a layer keeps ``ceil((1 - sparsity) * n)`` of its ``n`` groups; globally the
    lowest ``sparsity`` of all groups go, at least one staying per layer. Either way the kept
    count of each layer is rounded up so that it keeps a multiple of ``round_to`` columns (at
    most ``n`` groups; ``structured.rounding``: ``round_to`` channels or neurons, any number of
    heads whose head size is a multiple of it). Groups the
    surgery cannot follow (graph outputs, unknown ops, shared weights) always stay, and so do
    groups with a filter whose weight name ``layers`` (a regex) does not match or ``exclude``
    matches: excluding a residual member keeps its whole sum.

    With ``calibration`` (arrays by graph input name), the layers that lost inputs are then re-fit
    to the dense model's outputs on it, damped by ``ridge`` (``structured.reconstruct``).

    ``input_shapes`` and ``dims`` (sizes of symbolic dimensions by name) fix the shapes the
    groups are found with, as in ``analyze``; the compacted model declares them as its inputs'
    shapes (``structured.compact``); the masked one keeps the model's own, unless the shape
    arithmetic they fix was stored as constants (then it declares them too).

    Raises:
        InvalidOptionError: sparsity outside [0, 1), unknown criterion or scope, round_to < 1,
            a negative ridge, a bad expression, or expressions that leave nothing to prune.
        DatasetError: ``calibration`` does not fit the model's inputs.
    """
    if not 0 <= sparsity < 1:
        raise InvalidOptionError(f"sparsity={sparsity} must be in [0, 1)")
    if criterion not in CRITERIA:
        raise InvalidOptionError(f"criterion {criterion!r} must be one of {sorted(CRITERIA)}")
    if scope not in SCOPES:
        raise InvalidOptionError(f"scope {scope!r} must be one of {list(SCOPES)}")
    if round_to < 1:
        raise InvalidOptionError(f"round_to={round_to} must be at least 1")
    check_ridge(ridge)
    chosen = name_filter(layers, exclude)
    progress.report("structured: dependency groups", 0)
    source = load_model(model, max_bytes=max_bytes)
    ws = Workspace.of(source, Shapes(input_shapes, dims))
    groups = ws.groups
    stats = FilterStats(*filter_stats(groups, ws.arrays))
    scores = CRITERIA[criterion].fn(stats, np.random.default_rng(seed))
    fixed = groups.blocked | (stats.count == 0)
    for s in groups.filters:
        if not chosen(s.name):
            fixed[groups.of(s.tensor)] = True
    if (layers is not None or exclude is not None) and fixed.all():
        raise InvalidOptionError("--layers/--exclude leave no prunable unit to prune")
    pick = _per_layer if scope == "layer" else _global
    layers_of = layer_groups(groups)
    multiples = steps(groups, layers_of, round_to)
    drop = pick(scores, layers_of, fixed, sparsity, multiples)
    nest_steps = [step(round_to, widths(groups)[n.members].tolist()) for n in groups.nests]
    scoped = None if scope == "global" else sparsity
    _nested(drop, groups.nests, scores, fixed, scoped, nest_steps)
    zero(groups, drop, ws.arrays)
    masked = _masked(ws, drop, calibration is not None)
    named = model_units(groups, ws.model.graph)
    units = {}
    for s in groups.filters:  # the layers with units it could remove
        if not fixed[groups.of(s.tensor)].all():
            units[s.name] = named.kept(s.name, drop)
    refit = None
    if calibration is not None:
        masked, refit = reconstruct(source, masked, groups, drop, calibration, ridge=ridge)
    merge_copies(masked, ws.copies)  # the layers' copies of a vector left equal: stored once
    if calibration is None:
        result = compact_workspace(ws)
    else:
        result = compact_workspace(Workspace.of(masked, ws.shapes))  # new biases join the groups
        result = dataclasses.replace(result, params_before=ws.params)
    blocked = blocked_groups(groups) + body_blocks(ws.model)
    counted = [i for i, members in enumerate(layers_of) if not fixed[members].all()]
    reached = _Reached(
        sparsity,
        scope,
        round_to,
        removed=sum(int(drop[layers_of[i]].sum()) for i in counted),
        stayed=sum(int(fixed[layers_of[i]].sum()) for i in counted),
        sizes=tuple(layers_of[i].size for i in counted),
        nested=bool(groups.nests),
        steps=tuple(multiples[i] for i in counted),
    )
    return StructuredResult(
        result.model,
        masked,
        units,
        result,
        blocked,
        reached.warnings(blocked),
        sparsity,
        scope,
        round_to,
        reached.removed,
        reached.prunable,
        refit,
        {name: named.kind_of(name) for name in units},
        named.readable([*units, *(n for b in blocked for n in b.layers)]),
        named.totals(drop, fixed),
    )


def _masked(ws: Workspace, drop: np.ndarray, refit: bool) -> onnx.ModelProto:
    """The model with the ``drop`` groups zeroed (in ``ws.arrays``), in its own shapes.

    With nothing dropped and no re-fit to come (which reads the workspace's names), the model
    as it came. When fixed input shapes made shape arithmetic constants (``Workspace.folded``),
    it declares those shapes, as the compacted model does.
    """
    if not drop.any() and not refit:
        return copy.deepcopy(ws.source)
    masked = copy.deepcopy(ws.model)
    write_back(masked, ws.arrays)
    if ws.folded:  # shape arithmetic stored as constants: right for the fixed shapes only
        fix_input_shapes(masked, ws.shapes.inputs, ws.shapes.dims)
    return masked


@dataclass(frozen=True)
class _Reached:
    """What a structured prune removed of the prunable groups, to explain a missed target.

    Attributes:
        sparsity, scope, round_to: as asked.
        removed: groups removed.
        stayed: groups of the prunable layers that had to stay (blocked or excluded).
        sizes: the number of groups of each prunable layer.
        nested: some groups live within others (``structured.nests``).
        steps: the multiple of groups each prunable layer keeps for ``round_to`` columns
            (``structured.rounding``); all 1 when not given.
    """

    sparsity: float
    scope: str
    round_to: int
    removed: int
    stayed: int
    sizes: tuple[int, ...]
    nested: bool = False
    steps: tuple[int, ...] = ()

    @property
    def prunable(self) -> int:
        """Groups of the layers with at least one group free to go."""
        return sum(self.sizes)

    def warnings(self, blocked: tuple[BlockedGroup, ...]) -> tuple[str, ...]:
        """Nothing removed though asked to, or the target missed by more than ``TOLERANCE``."""
        if self.sparsity == 0:
            return ()
        if not self.prunable:
            return (_nothing_removed(blocked),)
        reached = self.removed / self.prunable
        if abs(reached - self.sparsity) <= TOLERANCE:
            return ()
        side = "below" if reached < self.sparsity else "above"
        causes = "; ".join(self._causes())
        return (
            f"removed {reached:.2%} of the prunable groups ({self.removed} of {self.prunable}), "
            f"{abs(reached - self.sparsity) * 100:.1f} points {side} the target "
            f"{self.sparsity:.2%}" + (f": {causes}" if causes else ""),
        )

    def _causes(self) -> list[str]:
        """What took the count away from ``sparsity * prunable``, in the order it applied."""
        s, r = self.sparsity, self.round_to
        multiple = f"each layer keeps a multiple of round_to={r} channels, neurons or head columns"
        causes = []
        if self.scope == "layer":
            ceil_only = sum(n - kept(n, s, 1) for n in self.sizes)
            per_layer = self.steps or (1,) * len(self.sizes)
            planned = sum(n - kept(n, s, k) for n, k in zip(self.sizes, per_layer, strict=True))
            if ceil_only < s * self.prunable - 1e-9:
                causes.append("each layer keeps ceil((1 - sparsity) * n) of its n groups")
            if planned < ceil_only:
                causes.append(multiple)
        else:
            planned = round(s * (self.prunable - self.stayed))
            if self.removed < planned:
                rounded = any(k > 1 for k in self.steps)
                causes.append(multiple if rounded else "every layer keeps at least one group")
        if self.nested:
            causes.append("query heads sharing a K/V head keep the same number in each group")
        if self.stayed and (self.scope == "global" or self.removed < planned):
            stayed = plural(self.stayed, "group")
            causes.append(f"{stayed} of these layers had to stay (blocked or excluded)")
        return causes


def _nothing_removed(blocked: tuple[BlockedGroup, ...]) -> str:
    """The warning when no group was free to go, naming the reasons holding the most groups."""
    if not blocked:
        return "nothing was removed: the model has no layer with units to prune"
    reasons = by_reason(blocked)
    shown = "; ".join(f"{b.reason} ({plural(b.groups, 'group')})" for b in reasons[:MAIN_REASONS])
    more = len(reasons) - MAIN_REASONS
    tail = f"; and {plural(more, 'more reason')}" if more > 0 else ""
    return f"nothing was removed: every group is blocked, mainly by {shown}{tail}"


def layer_groups(groups: Groups) -> list[np.ndarray]:
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


def _nested(
    drop: np.ndarray,
    nests: list[Nest],
    scores: np.ndarray,
    fixed: np.ndarray,
    sparsity: float | None,
    multiples: Sequence[int],
) -> None:
    """Choose again what each nest loses (``drop``, in place), the same number in each parent.

    Per layer (``sparsity``) the parents and the children are each asked for ``sparsity``;
    globally (None) for what the global choice kept of them. ``multiples``: per nest, the
    multiple of groups its counts keep (``structured.rounding``).
    """
    for nest, multiple in zip(nests, multiples, strict=True):
        g, r = nest.children.shape
        if sparsity is None:
            want = (float((~drop[nest.parents]).sum()), float((~drop[nest.children]).sum()))
        else:
            want = ((1 - sparsity) * g, (1 - sparsity) * g * r)
        drop[nest.members] = False
        drop[choose(nest, scores, fixed, want, multiple)] = True


def _per_layer(
    scores: np.ndarray,
    layers: list[np.ndarray],
    fixed: np.ndarray,
    sparsity: float,
    multiples: Sequence[int],
) -> np.ndarray:
    drop = np.zeros(scores.size, bool)
    for members, multiple in zip(layers, multiples, strict=True):
        free = members[~fixed[members]]
        k = min(members.size - kept(members.size, sparsity, multiple), free.size)
        drop[free[np.argsort(scores[free], kind="stable")[:k]]] = True
    return drop


def _global(
    scores: np.ndarray,
    layers: list[np.ndarray],
    fixed: np.ndarray,
    sparsity: float,
    multiples: Sequence[int],
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
        extra = min(members.size, multiples[i] * math.ceil(left[i] / multiples[i])) - left[i]
        dropped = members[drop[members]]
        drop[dropped[np.argsort(-norm[dropped], kind="stable")[:extra]]] = False
    return drop
