"""Pruning to a target *effective* sparsity.

The bisection of Vysogorets & Kempe's "low-cost extension" (arXiv 2107.02306, section 5).

The number of removed weights ``k`` (in score order, per the allocation) is bisected; each step
runs one connectivity analysis. Effective sparsity grows with ``k`` because masks are nested (a
fixed ranking, and a fixed seed for random scores), so the largest ``k`` whose effective sparsity
is at most the target is found in about ``log2(total)`` analyses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from onnxprune import progress

EFFECTIVE_SLACK = 0.005
"""How far below an effective target a prune may land unannounced."""

SHORTFALL = "effective sparsity short of the target"
"""How the warning of a missed effective target begins (the CLI then says it was not reached)."""


def reached(warnings: Iterable[str]) -> bool:
    """Whether a prune's ``warnings`` say nothing of a missed effective target."""
    return not any(w.startswith(SHORTFALL) for w in warnings)


@dataclass(frozen=True, slots=True)
class Bisection:
    """Outcome of the search.

    Attributes:
        removed: the largest number of weights removed whose effective sparsity <= target.
        effective_sparsity: the effective sparsity at ``removed``.
        analyses: how many connectivity analyses the search ran.
    """

    removed: int
    effective_sparsity: float
    analyses: int


def bisect_effective(
    effective_at: Callable[[int], float], low: int, high: int, target: float
) -> Bisection:
    """Largest ``k`` in ``[low, high]`` with ``effective_at(k) <= target``.

    Args:
        effective_at: effective sparsity after removing ``k`` weights (non-decreasing in ``k``).
        low: removals that are forced anyway (weights already zero); returned when even they
            exceed the target.
        high: the most weights that may be removed.
        target: the effective sparsity not to exceed.
    """
    steps = 2 + max(high - low, 1).bit_length()  # the analyses a full search runs at most

    def analysed(k: int, done: int) -> float:
        value = effective_at(k)
        progress.report("effective target", done, steps, f"{value:.4f} at {k} removed")
        return value

    analyses = 1
    best = analysed(low, analyses)
    if best > target:
        return Bisection(low, best, analyses)
    analyses += 1
    top = analysed(high, analyses)
    if top <= target:
        return Bisection(high, top, analyses)
    ok, bad = low, high  # invariant: effective_at(ok) <= target < effective_at(bad)
    while bad - ok > 1:
        mid = (ok + bad) // 2
        analyses += 1
        value = analysed(mid, analyses)
        if value <= target:
            ok, best = mid, value
        else:
            bad = mid
    return Bisection(ok, best, analyses)
