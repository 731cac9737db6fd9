"""Unstructured pruning in memory: scores + allocation + target -> masks -> pruned model.

``prune_weights`` is the in-memory path of ``onnxprune.prune`` (``onnxprune.verbs``), which
checks the options and chooses between it, streaming and structured pruning.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.build import ConnectivityGraph, Layer, build_graph
from onnxprune.model import DEFAULT_MAX_BYTES, ModelSource, load_model
from onnxprune.options import check_fraction
from onnxprune.pruners.allocations.global_ import global_masks
from onnxprune.pruners.allocations.minimum_threshold import minimum_threshold, most_removable
from onnxprune.pruners.allocations.sensitivity import Curve, check_curves, read_curves
from onnxprune.pruners.masks import (
    as_mask,
    kept_values,
    load_masks,
    load_npz,
    masks_from_counts,
    set_weights,
)
from onnxprune.pruners.nm import indivisible, nm_masks, parse_nm
from onnxprune.pruners.ranking import Ranking
from onnxprune.pruners.refit import Finish, reconstruction, refit_effective
from onnxprune.pruners.registry import LayerTargets, ScoreContext, get_allocation, get_score
from onnxprune.pruners.rows import RowGroups
from onnxprune.pruners.steps import RankedMasks, search_effective
from onnxprune.pruners.targets import EFFECTIVE_SLACK, SHORTFALL, Bisection
from onnxprune.report import SparsityReport
from onnxprune.sparsity import LEVELS, sparsity_report
from onnxprune.text import display_name

if TYPE_CHECKING:
    from onnxprune.macs import MacCount
    from onnxprune.options import PruneOptions
    from onnxprune.structured.compact import CompactResult
    from onnxprune.structured.prune import StructuredResult


@dataclass(frozen=True)
class PruneResult:
    """What ``onnxprune.prune`` gives back.

    Attributes:
        model: the pruned model (a new proto; the input is not modified); ``None`` when it was
            streamed to its output file.
        masks: boolean masks in the stored layout of each weight, keyed by its name
            (``True`` = kept), for every prunable weight that was considered (empty when
            streamed, they are in the masks file, and for a structured prune).
        report: direct and effective sparsity of the pruned model (``None`` for a structured
            prune: see ``structured``).
        warnings: one line each: layer collapse, skipped layers, unreachable targets.
        analyses: connectivity analyses run to reach an effective target (0 for direct).
        streamed: the model was pruned tensor by tensor into its output file.
        structured: a structured prune's units kept per layer, masked model and compaction.
        compaction: what compaction removed (structured, or ``compact=True``).
    """

    model: onnx.ModelProto | None
    masks: dict[str, np.ndarray]
    report: SparsityReport | None
    warnings: tuple[str, ...] = ()
    analyses: int = 0
    streamed: bool = False
    structured: StructuredResult | None = None
    compaction: CompactResult | None = None

    @property
    def cost(self) -> MacCount:
        """The MACs of the model given back (after compaction, when there was one)."""
        return self.report.cost if self.compaction is None else self.compaction.macs_after

    @property
    def dense_macs_before(self) -> int | None:
        """The dense MACs of the model before pruning (a mask does not change them)."""
        return self.report.macs if self.compaction is None else self.compaction.macs_before.macs

    def to_dict(self) -> dict:
        """The JSON a prune writes (``--report-out``, ``--json``).

        The sparsity report of an unstructured prune (with ``compaction`` when it was
        compacted) and its ``warnings``, the units and compaction of a structured one.
        """
        if self.structured is not None:
            return self.structured.to_dict()
        data = self.report.to_dict()
        if self.compaction is not None:
            data["compaction"] = self.compaction.to_dict()
        data["warnings"] = list(self.warnings)
        return data


def prune_weights(
    model: ModelSource,
    options: PruneOptions,
    *,
    masks: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    scores: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    sensitivity: str | os.PathLike | Mapping | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PruneResult:
    """Unstructured pruning in memory: scores + allocation + target -> masks -> pruned model.

    ``onnxprune.prune`` checks ``options`` (``check_prune``) and calls this for every prune that
    is neither structured nor streamed.

    Args:
        model: a path, serialized bytes or an ``onnx.ModelProto``.
        options: checked prune options.
        masks: masks to apply (and to compose with), an ``.npz`` path or a mapping.
        scores: external importance scores, an ``.npz`` path or a mapping keyed by weight name;
            they replace ``options.score``.
        calibration: arrays keyed by graph input name, for the ``activation`` score.
        sensitivity: the JSON of ``onnxprune sensitivity`` (a path or the parsed document),
            for the ``sensitivity`` allocation.
        max_bytes: largest model accepted.

    Returns:
        A ``PruneResult`` with the pruned model, the masks and the report.

    Raises:
        InvalidOptionError: a bad regular expression, scores, masks or sensitivity file (one
            measured on another model).
        InvalidModelError: the model cannot be read safely.
    """
    o = options
    progress.report("analyze", 0)
    bodies = None
    if scores is None and get_score(o.score).reads_graph:
        bodies = f"the {o.score} score runs the main graph only, so it is not pruned"
    plan = _Plan.make(model, o, max_bytes, bodies)
    kept = plan.kept(load_masks(masks) if isinstance(masks, (str, os.PathLike)) else masks)
    ctx = ScoreContext(
        plan.graph,
        plan.model,
        target=o.sparsity,
        seed=o.seed,
        calibration=calibration,
        rounds=o.rounds,
        masks=kept,
    )
    rebuild = reconstruction(plan, o.score, scores is None, ctx)
    if o.nm is not None:
        n, m = parse_nm(o.nm)
        if rebuild is not None:
            return rebuild(LayerTargets(nm=(n, m), skip_indivisible=o.skip_indivisible))
        contracts = {name: plan.layers[name].contract for name in plan.selected}
        chosen = _scores(plan, o.score, scores, ctx)
        pattern = nm_masks(chosen, contracts, n, m, skip_indivisible=o.skip_indivisible)
        dense = _dense_for_nm(plan, contracts, n, m)
        return plan.finish({k: kept[k] & pattern[k] for k in kept}, dense, 0)
    if o.sparsity is None:
        return plan.finish(kept, (), 0)
    finish = Finish(plan, rebuild)
    groups = RowGroups.of(plan.layers, plan.selected, o.score if scores is None else None)
    chosen = groups.normalised(_scores(plan, o.score, scores, ctx))
    chosen = {k: kept_values(v, kept[k], -np.inf) for k, v in chosen.items()}
    allocation = get_allocation(o.allocation)
    allocate = allocation.fn
    if sensitivity is not None:
        allocate = functools.partial(allocate, curves=plan.curves(sensitivity))
    shapes = {name: plan.layers[name].shape for name in plan.selected}
    total = sum(math.prod(s) for s in shapes.values())
    sigma = selected_sigma(o.min_threshold, plan.total, total)

    def floored(counts: dict[str, int]) -> dict[str, int]:
        return counts if sigma is None else minimum_threshold(counts, shapes, sigma)

    def allocated(k: int) -> dict[str, int]:
        return floored(allocate(shapes, k / total, chosen) if total else {})

    forced = sum(m.size - int(np.count_nonzero(m)) for m in kept.values())
    if not o.effective:
        k = removal_count(o.sparsity, plan.total, plan.zeros_outside, total)
        if allocation.name == "global" and sigma is None and total:
            masks = global_masks(shapes, k / total, chosen)  # one selection
        else:
            masks = masks_from_counts(chosen, allocated(k))
        return finish(groups.regroup(chosen, masks), (), 0)
    # Each step's masks are a prefix of one score order, ordered only where the search cuts it
    # (no selection over all weights per step), and only the changes are analysed again.
    allocated(0)  # the allocation checks the scores (NaN, sizes) once
    ranking = Ranking(chosen, across_layers=allocation.name == "global")
    ranked_masks = RankedMasks(
        ranking,
        groups,
        chosen,
        (lambda k: floored(ranking.global_counts(k))) if ranking.across_layers else allocated,
        floored=sigma is not None,
    )
    # Removing every weight cuts every path; the search stops one short of it, which keeps
    # allocation targets inside [0, 1), and at what a minimum threshold lets go.
    top = max(total - 1, 0) if sigma is None else min(total - 1, most_removable(shapes, sigma))
    search = search_effective(plan, ranked_masks, (min(forced, top), top), o.sparsity)
    notes = _effective_notes(plan, ranked_masks, search, o.sparsity, top, sigma is not None)
    return refit_effective(finish, ranked_masks, search, (min(forced, top), top), o.sparsity, notes)


def _effective_notes(
    plan: _Plan,
    ranked_masks: Callable[[int], dict[str, np.ndarray]],
    search: Bisection,
    target: float,
    top: int,
    floored: bool,
) -> tuple[str, ...]:
    """A warning when the search ends over the target (already before pruning) or short of it.

    Short by more than ``EFFECTIVE_SLACK`` and one weight: ``_shortfall`` says why (with one
    more analysis, not counted: it is not part of the search).
    """
    if search.effective_sparsity > target:
        return (
            f"effective sparsity is already {search.effective_sparsity:.4f} before pruning, "
            f"above the target {target}",
        )
    if target - search.effective_sparsity > max(EFFECTIVE_SLACK, 1 / max(top + 1, 1)):
        return (_shortfall(plan, ranked_masks, search, target, top, floored),)
    return ()


def _shortfall(
    plan: _Plan,
    ranked_masks: Callable[[int], dict[str, np.ndarray]],
    search: Bisection,
    target: float,
    top: int,
    floored: bool,
) -> str:
    """Why the effective target was missed: what the next weight in score order would do.

    The search keeps the most removals whose effective sparsity stays under the target; the
    next removal jumps over it, usually by cutting the last paths through a saturated layer.
    """
    reached = f"{SHORTFALL} {target}: {search.effective_sparsity:.4f}"
    if search.removed >= top:
        if floored:
            return f"{reached}; the minimum threshold lets no more weights go"
        return f"{reached}; every prunable weight but one is removed already"
    now, after = ranked_masks(search.removed), ranked_masks(search.removed + 1)
    thinned = [
        f"{name}, which would keep {int(after[name].sum()):,} of {after[name].size:,}"
        for name in now
        if after[name].sum() < now[name].sum()
    ]
    jump = plan.effective(after)
    where = f" (from {'; '.join(thinned[:3])})" if thinned else ""
    return (
        f"{reached}; the next weight in score order{where} takes it to {jump:.4f}, so the "
        "target is not reachable with this score and allocation; try --min-threshold or "
        "another allocation"
    )


def _scores(
    plan: _Plan,
    score: str,
    external: str | os.PathLike | Mapping[str, np.ndarray] | None,
    ctx: ScoreContext,
) -> dict[str, np.ndarray]:
    """Scores of the selected weights in the consumed layout, from the registry or a file."""
    weights = {name: plan.weight(name) for name in plan.selected}
    if external is None:
        progress.report(f"score ({score})", 0)
        return get_score(score).fn(weights, ctx)
    given = load_npz(external, "scores") if isinstance(external, (str, os.PathLike)) else external
    missing = sorted(set(weights) - set(given))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidOptionError(f"scores lack {len(missing)} weight(s): {shown}")
    out = {}
    for name in weights:
        layer = plan.layers[name]
        stored = _real_scores(name, given[name])
        expected = _stored_shape(plan, name)
        if stored.shape != expected:
            raise InvalidOptionError(
                f"scores for {name!r} have shape {stored.shape}, the weight has {expected}"
            )
        out[name] = layer.contract.source.to_consumed(stored, layer.shape)
    return out


def _real_scores(name: str, value: np.ndarray) -> np.ndarray:
    """External scores as float64; complex, non-numeric or NaN scores are refused.

    Raises:
        InvalidOptionError: ``scores for 'w' are complex128; scores are real numbers``.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InvalidOptionError(f"scores for {name!r} are {array.dtype}; scores are real numbers")
    scores = array.astype(np.float64)
    if np.isnan(scores).any():
        raise InvalidOptionError(f"scores for {name!r} hold NaN; scores are ordered numbers")
    return scores


def _stored_shape(plan: _Plan, name: str) -> tuple[int, ...]:
    layer = plan.layers[name]
    return layer.contract.source.to_stored(np.empty(layer.shape, bool)).shape


@dataclass(frozen=True)
class _Plan:
    """The model, its graph, and which prunable weights this run may touch."""

    model: onnx.ModelProto
    graph: ConnectivityGraph
    layers: dict[str, Layer]  # first use of each stored weight, in graph order
    selected: tuple[str, ...]
    skipped: tuple[str, ...]  # warnings about layers left alone
    level: str
    total: int  # all prunable weights
    zeros_outside: int  # zeros of the weights not selected

    @staticmethod
    def make(
        source: ModelSource, options: PruneOptions, max_bytes: int, bodies: str | None = None
    ) -> _Plan:
        level = options.level
        if level not in LEVELS:
            raise InvalidOptionError(f"level={level!r} must be one of {sorted(LEVELS)}")
        model = load_model(source, max_bytes=max_bytes)
        graph = build_graph(model, options.shapes, dims=options.dim_sizes)
        first, selected, skipped = select_layers(
            graph, options.layers, options.exclude, options.prune_shared, bodies
        )
        zeros_outside = sum(
            int((graph.weight(layer) == 0).sum())
            for name, layer in first.items()
            if name not in selected
        )
        total = sum(math.prod(layer.shape) for layer in first.values())
        # The selected weights converted once: scores, masks, search and report all read them.
        converted = {
            name: first[name].contract.source.to_stored(graph.weight(first[name]))
            for name in selected
        }
        graph = dataclasses.replace(graph, overrides=converted)
        return _Plan(model, graph, first, selected, skipped, level, total, zeros_outside)

    def weight(self, name: str) -> np.ndarray:
        return self.graph.weight(self.layers[name])

    def curves(self, source: str | os.PathLike | Mapping) -> dict[str, Curve]:
        """The sensitivity curves in ``source``, checked to be of this model's layers."""
        curves = read_curves(source)
        check_curves(curves, {name: math.prod(layer.shape) for name, layer in self.layers.items()})
        return curves

    def kept(self, given: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """Per selected weight: nonzero and not masked by ``given`` (consumed layout)."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.layers))
        if unknown:
            raise InvalidOptionError(f"masks name no prunable weight: {', '.join(unknown[:5])}")
        kept = {}
        for name in self.selected:
            keep = self.weight(name) != 0
            if name in given:
                layer = self.layers[name]
                mask = as_mask(name, given[name])
                if mask.shape != _stored_shape(self, name):
                    raise InvalidOptionError(
                        f"mask {name!r} has shape {mask.shape}, the weight has "
                        f"{_stored_shape(self, name)}"
                    )
                keep &= layer.contract.source.to_consumed(mask, layer.shape)
            kept[name] = keep
        return kept

    def stored(self, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: self.layers[k].contract.source.to_stored(v) for k, v in masks.items()}

    def masked_graph(
        self, masks: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray] | None = None
    ) -> ConnectivityGraph:
        """The graph with masked weights zeroed (and ``weights``, consumed layout, in place)."""
        values = weights or {}
        overrides = {
            name: self.layers[name].contract.source.to_stored(
                kept_values(values[name] if name in values else self.weight(name), m)
            )
            for name, m in masks.items()
        }
        return dataclasses.replace(self.graph, overrides=overrides)

    def effective(self, masks: Mapping[str, np.ndarray]) -> float:
        return sparsity_report(self.masked_graph(masks), level=self.level).effective_sparsity

    def finish(
        self,
        masks: dict[str, np.ndarray],
        notes: tuple[str, ...],
        analyses: int,
        weights: Mapping[str, np.ndarray] | None = None,
    ) -> PruneResult:
        """The pruned model (masked, or set to re-fitted ``weights``), its masks and report."""
        stored = self.stored(masks)
        sources = {name: self.layers[name].contract.source for name in stored}
        graph = self.masked_graph(masks, weights)  # zeroed once: for the model and the report
        changed = {  # a weight a mask leaves whole stays bit-identical
            name: graph.overrides[name]
            for name in stored
            if weights is not None or not masks[name].all()
        }
        pruned = set_weights(self.model, changed, sources)
        report = sparsity_report(graph, level=self.level)
        labels = {layer.name: layer.label for layer in report.layers}
        collapsed = collapse_warnings(
            (display_name(name, labels.get(name)), int(np.count_nonzero(m)), m.size)
            for name, m in masks.items()
        )
        warnings = (*self.skipped, *collapsed, *notes)
        return PruneResult(pruned, stored, report, warnings, analyses)


def _dense_for_nm(plan: _Plan, contracts: Mapping, n: int, m: int) -> tuple[str, ...]:
    """A warning naming the layers N:M leaves dense (``skip_indivisible``), or none."""
    shapes = {name: plan.layers[name].shape for name in contracts}
    sizes = indivisible(shapes, contracts, m)
    if not sizes:
        return ()
    named = ", ".join(
        f"{display_name(name, plan.layers[name].label)} reads {size}"
        for name, size in sizes.items()
    )
    return (f"{n}:{m} left {len(sizes)} layers dense, input size not a multiple of {m}: {named}",)


def select_layers(
    graph: ConnectivityGraph,
    layers: str | None,
    exclude: str | None,
    prune_shared: bool = False,
    bodies: str | None = None,
) -> tuple[dict[str, Layer], tuple[str, ...], tuple[str, ...]]:
    """Which prunable weights a run may touch.

    A weight several nodes read (``graph.shared``: a language-model head tied to the embedding
    table, layers deduplicated through ``Identity``) is left alone: a mask chosen for one reader
    changes all of them. ``prune_shared`` prunes it anyway. Either way a warning names every
    reader.

    Args:
        graph: the model's connectivity graph.
        layers: regular expression; only weights whose name matches are selected.
        exclude: regular expression; weights whose name matches are not selected.
        prune_shared: select shared weights too.
        bodies: why weights used inside ``If``/``Loop``/``Scan`` bodies are left alone this
            run (a score that runs the main graph only), or ``None`` to select them too.

    Returns:
        The first use of every stored weight (graph order), the selected weight names, and one
        warning per shared weight and per weight left alone for a reason other than the
        expressions (quantized), or one (``NO_WEIGHTS``) when the model has none.

    Raises:
        InvalidOptionError: a bad expression, or expressions that select nothing.
    """
    shared = dict(graph.shared)
    for body in graph.subgraphs():
        shared.update(body.shared)
    first: dict[str, Layer] = {}
    in_bodies: dict[str, str] = {}
    for layer in graph.all_layers:  # weights inside If/Loop/Scan bodies too
        first.setdefault(layer.name, layer)
        if layer.scope:
            in_bodies.setdefault(layer.name, layer.scope)
    chosen = name_filter(layers, exclude)
    selected, skipped = [], []
    for name, layer in first.items():
        if not chosen(name):
            continue
        if layer.contract.source.dequantized:
            skipped.append(f"{name}: quantized (DequantizeLinear) weights are not pruned")
            continue
        if bodies is not None and name in in_bodies:
            skipped.append(f"{name}: used inside {in_bodies[name]}; {bodies}")
            continue
        if name in shared:
            readers = ", ".join(shared[name])
            if not prune_shared:
                skipped.append(f"{name}: shared by {readers}: left alone (see --prune-shared)")
                continue
            skipped.append(f"{name}: shared by {readers}: pruned for all of them")
        selected.append(name)
    if (layers or exclude) and not selected:
        raise InvalidOptionError("--layers/--exclude leave no prunable weight to prune")
    if not first:
        skipped.append(NO_WEIGHTS)
    return first, tuple(selected), tuple(skipped)


NO_WEIGHTS = (
    "nothing was pruned: the model has no prunable weight (a constant weight of a Conv, "
    "ConvTranspose, Gemm, MatMul, LSTM, GRU or RNN; analyze lists the nodes it could not follow)"
)
"""The warning of a run on a model without prunable weights (ConvInteger and MatMulInteger
of a dynamically quantized model are none), which otherwise writes a copy in silence."""


def name_filter(layers: str | None, exclude: str | None) -> Callable[[str], bool]:
    """Whether a weight name matches ``layers`` (a regex, None: all) and not ``exclude``.

    Raises:
        InvalidOptionError: an expression that is not a regular expression.
    """
    include_re, exclude_re = _regex("--layers", layers), _regex("--exclude", exclude)

    def chosen(name: str) -> bool:
        return not (include_re and not include_re.search(name)) and not (
            exclude_re and exclude_re.search(name)
        )

    return chosen


def removal_count(sparsity: float, everything: int, zeros_outside: int, selected: int) -> int:
    """Weights to remove from the selected layers so that all prunable weights hit ``sparsity``.

    Args:
        sparsity: the direct sparsity wanted over all ``everything`` prunable weights.
        everything: number of prunable weights.
        zeros_outside: zeros of the weights that are not selected (they count as removed).
        selected: number of selected weights.

    Raises:
        InvalidOptionError: the selected weights are too few to reach ``sparsity``.
    """
    k = round(sparsity * everything) - zeros_outside
    if k > selected:
        raise InvalidOptionError(
            f"sparsity={sparsity} needs {k} of the {selected} selected weights removed (the "
            "others are left alone: --layers/--exclude, shared, quantized or in a body the score "
            "cannot see)"
        )
    return max(k, 0)


def selected_sigma(min_threshold: float | None, everything: int, selected: int) -> float | None:
    """``minimum_threshold``'s sigma over the selected weights for ``--min-threshold``.

    ``--min-threshold`` is a fraction of all prunable weights; ``minimum_threshold`` takes a
    fraction of the weights it is given, the selected ones.

    Raises:
        InvalidOptionError: ``min_threshold`` outside [0, 1).
    """
    if min_threshold is None:
        return None
    check_fraction("min_threshold", min_threshold)
    return min_threshold * everything / max(selected, 1)


NEAR_COLLAPSE = 0.01
"""A layer that keeps less than this fraction of its weights gets a near-collapse warning."""
NEAR_COLLAPSE_WEIGHTS = 8
"""So does a pruned layer that keeps fewer weights than this, whatever its size."""


def collapse_warnings(layers: Iterable[tuple[str, int, int]]) -> tuple[str, ...]:
    """One warning per layer pruned to 100% or near it, suggesting the minimum threshold.

    Near: it keeps under ``NEAR_COLLAPSE`` of its weights, or fewer than
    ``NEAR_COLLAPSE_WEIGHTS``; a layer left whole never is.

    Args:
        layers: ``(name, kept, size)`` of each pruned layer.

    Returns:
        One line per such layer, suggesting the minimum threshold.
    """
    warnings = []
    for name, kept, size in layers:
        if size and not kept:
            warnings.append(
                f"{name}: pruned to 100% (layer collapse; every path through it is cut); "
                "try --min-threshold"
            )
        elif kept < size and (kept < NEAR_COLLAPSE * size or kept < NEAR_COLLAPSE_WEIGHTS):
            warnings.append(
                f"{name}: keeps {kept} of {size} weights ({kept / size:.2%}; near layer "
                "collapse); try --min-threshold or another allocation"
            )
    return tuple(warnings)


def _regex(flag: str, pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise InvalidOptionError(f"{flag} {pattern!r} is not a regular expression: {e}") from e
