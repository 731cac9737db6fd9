"""Pruning to a target *effective* sparsity.

The bisection of Vysogorets & Kempe's "low-cost extension" (arXiv 2107.02306, section 5).

The number of removed weights ``k`` (in score order, per the allocation) is bisected; each step
runs one connectivity analysis. Effective sparsity grows with ``k`` because masks are nested (a
fixed ranking, and a fixed seed for random scores), so the largest ``k`` whose effective sparsity
is at most the target is found in about ``log2(total)`` analyses.
"""

from __future__ import annotations

import math
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


def direct_bound(target: float, everything: int, zeros_outside: int) -> int:
    """The most removals whose direct sparsity stays at most ``target``.

    Effective sparsity is never below direct sparsity, so no search for ``target`` needs to
    look past this count. Compared as the report compares (a float quotient), so the bound is
    exact: one more removal puts direct, hence effective, sparsity over ``target``.

    Args:
        target: the effective sparsity not to exceed.
        everything: all prunable weights.
        zeros_outside: zeros of the weights not selected (they count as removed).

    Example:
        >>> direct_bound(0.5, 10, 1)
        4
    """
    if everything == 0:  # nothing to remove
        return 0
    k = math.floor(target * everything) - zeros_outside
    while (k + 1 + zeros_outside) / everything <= target:
        k += 1
    while k >= 0 and (k + zeros_outside) / everything > target:
        k -= 1
    return k


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
    # At most the analyses a full search runs.
    analysed = _reporter(effective_at, 2 + max(high - low, 1).bit_length())
    ends = _ends(analysed, low, high, target)
    if isinstance(ends, Bisection):
        return ends
    ((ok, best), (bad, _)), analyses = ends, 2
    # invariant: effective_at(ok) <= target < effective_at(bad)
    while bad - ok > 1:
        mid = (ok + bad) // 2
        analyses += 1
        value = analysed(mid, analyses)
        if value <= target:
            ok, best = mid, value
        else:
            bad = mid
    return Bisection(ok, best, analyses)


def search_nested(
    effective_at: Callable[[int], float],
    low: int,
    high: int,
    target: float,
    size: int,
    direct_low: float,
) -> Bisection:
    """``bisect_effective``'s answer for nested masks, in fewer analyses.

    With nested masks (each step's removals contain the previous ones: one global order, no
    re-balancing) effective sparsity is non-decreasing in ``k``, so the largest ``k`` with
    ``effective_at(k) <= target`` is unique and any bracketing search finds the one bisection
    finds. Here a step interpolates between the bracket's ends on a log-log scale, the
    effective density ``1 - s`` against the weights left ``size - k`` (near a high target the
    curve bends sharply and is close to a power law there), as regula falsi in its Illinois
    variant: the value of an end kept twice in a row is halved towards the target, so that a
    bent curve does not pin that end. An end where every path is cut (effective sparsity 1) says
    nothing of the curve's shape: while the bracket has one, a step halves it on the log scale
    of the weights left instead. The step after an interpolation that did not halve the
    bracket bisects: at most about twice bisection's analyses, usually far fewer. ``low`` is
    analysed last, and only when no larger count is under the target: until then its direct
    sparsity stands in for its effective sparsity (never above it).

    Args:
        effective_at: effective sparsity after removing ``k`` weights, non-decreasing in ``k``.
        low: removals that are forced anyway; returned when even they exceed the target.
        high: the most weights that may be removed.
        target: the effective sparsity not to exceed.
        size: the weights the search removes from (``high < size``).
        direct_low: the direct sparsity at ``low``.
    """
    analysed = _reporter(effective_at, 1 + max(high - low, 1).bit_length())
    top = analysed(high, 1)
    if top <= target or high <= low:
        return Bisection(high, top, 1)
    analyses, ok, bad = 1, (low, direct_low), (high, top)
    floor = 0.5 / max(size, 1)  # densities of a fully cut model still have a logarithm

    def point(k: int, value: float) -> tuple[float, float]:
        return math.log(size - k), math.log(max(1.0 - value, floor))

    aim = math.log(max(1.0 - target, floor))
    p_ok, p_bad = point(*ok), point(*bad)
    kept, bisect = None, False
    while bad[0] - ok[0] > 1:
        width = bad[0] - ok[0]
        if bisect:
            k = (ok[0] + bad[0]) // 2
        elif bad[1] >= 1.0:  # a fully cut end tells nothing of the curve: halve log(weights left)
            k = round(size - math.exp((p_ok[0] + p_bad[0]) / 2))
            k = min(max(k, ok[0] + 1), bad[0] - 1)
        else:
            step = (aim - p_ok[1]) / min(p_bad[1] - p_ok[1], -1e-300)
            k = round(size - math.exp(p_ok[0] + step * (p_bad[0] - p_ok[0])))
            k = min(max(k, ok[0] + 1), bad[0] - 1)
        analyses += 1
        value = analysed(k, analyses)
        if value <= target:
            ok, p_ok = (k, value), point(k, value)
            if kept == "bad":  # Illinois: the same end kept twice
                p_bad = (p_bad[0], aim + (p_bad[1] - aim) / 2)
            kept = "bad"
        else:
            bad, p_bad = (k, value), point(k, value)
            if kept == "ok":
                p_ok = (p_ok[0], aim + (p_ok[1] - aim) / 2)
            kept = "ok"
        bisect = not bisect and (bad[0] - ok[0]) * 2 > width  # interpolation did not halve it
    if ok[0] == low:  # no count above it is under the target: only now is low analysed
        analyses += 1
        return Bisection(low, analysed(low, analyses), analyses)
    return Bisection(ok[0], ok[1], analyses)


def _reporter(effective_at: Callable[[int], float], steps: int) -> Callable[[int, int], float]:
    """``effective_at`` that reports each analysis as progress (of about ``steps``)."""

    def analysed(k: int, done: int) -> float:
        value = effective_at(k)
        progress.report("effective target", done, steps, f"{value:.4f} at {k} removed")
        return value

    return analysed


def _ends(
    analysed: Callable[[int, int], float], low: int, high: int, target: float
) -> Bisection | tuple[tuple[int, float], tuple[int, float]]:
    """The search's answer when an end decides it, else the bracket ``(k, value)`` of each."""
    best = analysed(low, 1)
    if best > target:
        return Bisection(low, best, 1)
    top = analysed(high, 2)
    if top <= target:
        return Bisection(high, top, 2)
    return (low, best), (high, top)
