"""How a prune ends for a score that re-fits the weights it keeps (SparseGPT).

Such a score (``reconstruct=`` in the registry) is handed each layer's number of weights to
remove, or the N:M pattern, once its scores and the allocation have decided them; its masks
(chosen block by block on the updated weights) and weights are what the prune writes.

With an effective target, the ranking's bisection gives a count per layer, but the re-fit's own
masks at those counts may cut more or fewer paths than the ranking's: ``refit_effective`` then
bisects the overall count again with whole re-fits (at most ``REFIT_STEPS``, each count
interpolated between the nearest runs below and above the target), keeping the run closest
below the target, and warns when it is still more than ``EFFECTIVE_SLACK`` away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from onnxprune.pruners.registry import LayerTargets, ScoreContext, get_score
from onnxprune.pruners.targets import EFFECTIVE_SLACK, SHORTFALL

if TYPE_CHECKING:
    from onnxprune.pruners.prune import PruneResult
    from onnxprune.pruners.targets import Bisection

REFIT_STEPS = 8
"""Most re-fits spent bisecting the count towards an effective target."""

Rebuild = Callable[..., "PruneResult"]


class Plan(Protocol):
    """What a prune's plan offers here (``pruners.prune``'s plan of the selected layers)."""

    selected: tuple[str, ...]

    def weight(self, name: str) -> np.ndarray:
        """The consumed weight of layer ``name``."""
        ...

    def finish(
        self,
        masks: dict[str, np.ndarray],
        notes: tuple[str, ...],
        analyses: int,
        weights: Mapping[str, np.ndarray] | None = None,
    ) -> PruneResult:
        """The pruned model, masks and report (with re-fitted ``weights`` when given)."""
        ...


@dataclass(frozen=True)
class Finish:
    """The end of a prune by masks: applied, or for a reconstructing score, its counts re-fit."""

    plan: Plan
    rebuild: Rebuild | None

    def __call__(
        self, masks: dict[str, np.ndarray], notes: tuple[str, ...], analyses: int
    ) -> PruneResult:
        """The result for ``masks``; a re-fit keeps only their count per layer."""
        if self.rebuild is None:
            return self.plan.finish(masks, notes, analyses)
        counts = {name: mask.size - int(np.count_nonzero(mask)) for name, mask in masks.items()}
        return self.rebuild(LayerTargets(counts=counts), notes, analyses)


def reconstruction(plan: Plan, score: str, registered: bool, ctx: ScoreContext) -> Rebuild | None:
    """For a registered score that re-fits its weights: targets -> its pruned model, else None.

    Args:
        plan: the prune's plan (model, graph, selected layers).
        score: the score's name.
        registered: the scores are the registered score's (not an external file).
        ctx: what the score reads.
    """
    reconstruct = get_score(score).reconstruct if registered else None
    if reconstruct is None:
        return None
    weights = {name: plan.weight(name) for name in plan.selected}

    def rebuild(targets: LayerTargets, notes: tuple[str, ...] = (), analyses: int = 0):
        done = reconstruct(weights, ctx, targets)
        return plan.finish(done.masks, (*notes, *done.warnings), analyses, done.weights)

    return rebuild


def refit_effective(
    finish: Finish,
    masks_at: Callable[[int], dict[str, np.ndarray]],
    search: Bisection,
    bounds: tuple[int, int],
    target: float,
    notes: tuple[str, ...],
) -> PruneResult:
    """The prune at the ranking's count ``search.removed``; for a re-fit, bisected again.

    Args:
        finish: how the prune ends.
        masks_at: the ranking's masks with ``k`` weights removed overall.
        search: the ranking's bisection.
        bounds: the smallest and largest ``k`` the search may take.
        target: the effective sparsity asked for.
        notes: warnings so far (effective sparsity already above the target: no search).

    Returns:
        The ranking's result, or the best re-fit: effective sparsity at most ``target`` and
        closest to it, with a warning when it is more than ``EFFECTIVE_SLACK`` below (or, when no
        re-fit reached at most ``target``, the last one tried, with a warning).
    """
    k = search.removed
    run = finish(masks_at(k), notes, search.analyses)
    if finish.rebuild is None or notes:
        return run
    (lo, low), (hi, high) = (bounds[0], 0.0), (bounds[1], 1.0)
    best = None
    for step in range(REFIT_STEPS + 1):
        reached = run.report.effective_sparsity
        if reached <= target:
            (lo, low), best = (k, reached), run
        else:
            hi, high = k, reached
        done = best is not None and target - best.report.effective_sparsity <= EFFECTIVE_SLACK
        if done or hi - lo <= 1 or step == REFIT_STEPS:
            break
        k = _next_count(lo, low, hi, high, target - EFFECTIVE_SLACK / 2)
        run = finish(masks_at(k), notes, search.analyses)
    chosen = best or run
    chosen = dataclasses.replace(chosen, analyses=search.analyses + step + 1)
    reached = chosen.report.effective_sparsity
    if 0 <= target - reached <= EFFECTIVE_SLACK:
        return chosen
    where = (
        f"{SHORTFALL} {target}: {reached:.4f}"
        if reached < target
        else (f"effective sparsity {reached:.4f} is above the target {target}")
    )
    note = (
        f"{where} after {step + 1} re-fits (the re-fit chooses its own masks at each count, "
        "and no count tried landed within 0.5 points below the target)"
    )
    return dataclasses.replace(chosen, warnings=(*chosen.warnings, note))


def _next_count(lo: int, low: float, hi: int, high: float, aim: float) -> int:
    """Where the line through ``(lo, low)`` and ``(hi, high)`` meets ``aim``.

    Kept at least a sixteenth of the bracket inside it, so that the bracket shrinks every step.
    """
    guess = lo + (aim - low) / max(high - low, 1e-12) * (hi - lo)
    margin = max(1, (hi - lo) // 16)
    return int(min(max(round(guess), lo + margin), hi - margin))
