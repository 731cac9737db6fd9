"""Pruning to a target *effective* sparsity.

The bisection of Vysogorets & Kempe's "low-cost extension" (arXiv 2107.02306, section 5).

The number of removed weights ``k`` (in score order, per the allocation) is searched for the
largest ``k`` whose effective sparsity is at most the target; each step runs one connectivity
analysis. ``bisect_effective`` bisects, in about ``log2(total)`` analyses. With nested masks (one
global order) effective sparsity is a non-decreasing step function of ``k``: most removals add
one weight's share or nothing, a removal that cuts a unit off adds all that hung on it. There
``search_nested`` finds the same count in fewer analyses: it interpolates on a log-log scale,
and after an interpolation that lands on its own side of the answer it overshoots rather than
bisects, so that few steps land far from the answer (far steps cost the most when steps are
analysed incrementally). Its bracket starts at ``direct_bound`` (effective sparsity is never
below direct) or, where fewer removals already empty layers that cut every path, one short of
those (``pruners.steps.first_cut``: effective sparsity 1 there, known without an analysis).
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
    of the weights left instead.

    An interpolation that does not halve the bracket has landed on the side of the answer it
    came from, usually close to it (a bent curve, or a jump in the bracket: a unit cut off).
    The next step overshoots: past the count it found by twice the distance it moved its end,
    so that the answer is likely bracketed closely, never past the bracket's midpoint. Only
    when that does not halve the bracket either does a step bisect, and overshoots wait until
    an interpolation halves the bracket again (a curve ruled by a large jump). Bisection's
    steps far from the answer, each about a whole analysis with incremental steps, are mostly
    saved; in the worst case a halving takes three steps instead of two.
    ``low`` is analysed last, and only when no larger count is under the target: until then its
    direct sparsity stands in for its effective sparsity (never above it).

    Args:
        effective_at: effective sparsity after removing ``k`` weights, non-decreasing in ``k``.
        low: removals that are forced anyway; returned when even they exceed the target.
        high: the most weights that may be removed.
        target: the effective sparsity not to exceed.
        size: the weights the search removes from (``high < size``).
        direct_low: the direct sparsity at ``low``; at most ``target`` unless ``high == low``
            (``high`` is at most the direct bound).
    """
    analysed = _reporter(effective_at, 1 + max(high - low, 1).bit_length())
    top = analysed(high, 1)
    if top <= target or high <= low:
        return Bisection(high, top, 1)
    analyses, ok, bad = 1, (low, direct_low), (high, top)
    curve = _LogLog(size, target)
    p_ok, p_bad = curve.point(*ok), curve.point(*bad)
    kept, step, moved, overshoots = None, "interpolate", 0, True
    while bad[0] - ok[0] > 1:
        width, middle = bad[0] - ok[0], (ok[0] + bad[0]) // 2
        if step == "bisect":
            k = middle
        elif step == "overshoot":  # past the count the interpolation found (an end now)
            k = min(ok[0] + 2 * moved, middle) if kept == "bad" else max(bad[0] - 2 * moved, middle)
        else:
            k = min(max(curve.interpolate(p_ok, p_bad, bad[1] >= 1.0), ok[0] + 1), bad[0] - 1)
        analyses += 1
        value = analysed(k, analyses)
        moved = k - ok[0] if value <= target else bad[0] - k
        if value <= target:
            ok, p_ok = (k, value), curve.point(k, value)
            if kept == "bad":  # Illinois: the same end kept twice
                p_bad = curve.halved(p_bad)
            kept = "bad"
        else:
            bad, p_bad = (k, value), curve.point(k, value)
            if kept == "ok":
                p_ok = curve.halved(p_ok)
            kept = "ok"
        halved = (bad[0] - ok[0]) * 2 <= width
        if step != "bisect" and (halved or step == "overshoot"):
            overshoots = halved  # until an interpolation halves the bracket again
        step = _next_step(step, halved=halved, overshoots=overshoots)
    if ok[0] == low:  # no count above it is under the target: only now is low analysed
        analyses += 1
        return Bisection(low, analysed(low, analyses), analyses)
    return Bisection(ok[0], ok[1], analyses)


def _next_step(step: str, *, halved: bool, overshoots: bool) -> str:
    """The next step's kind: what the last one (``step``) did to the bracket decides.

    After a step that halved the bracket, or a bisection, interpolate; after an interpolation
    that did not, overshoot (while ``overshoots``); else bisect.
    """
    if halved or step == "bisect":
        return "interpolate"
    return "overshoot" if step == "interpolate" and overshoots else "bisect"


@dataclass(frozen=True, slots=True)
class _LogLog:
    """The search's scale: log effective density against log weights left.

    Attributes:
        size: the weights the search removes from.
        target: the effective sparsity not to exceed.
    """

    size: int
    target: float

    @property
    def floor(self) -> float:
        """The density a fully cut model is given, so that it still has a logarithm."""
        return 0.5 / max(self.size, 1)

    @property
    def aim(self) -> float:
        """The target on this scale."""
        return math.log(max(1.0 - self.target, self.floor))

    def point(self, k: int, value: float) -> tuple[float, float]:
        """Count ``k`` with effective sparsity ``value`` on this scale."""
        return math.log(self.size - k), math.log(max(1.0 - value, self.floor))

    def halved(self, p: tuple[float, float]) -> tuple[float, float]:
        """``p`` with its distance to the target halved (Illinois)."""
        return p[0], self.aim + (p[1] - self.aim) / 2

    def interpolate(self, p_ok: tuple[float, float], p_bad: tuple[float, float], cut: bool) -> int:
        """The count where the line between two points meets the target.

        With a fully ``cut`` bad end (no shape to follow), the middle of the weights left on
        the log scale instead.
        """
        if cut:
            return round(self.size - math.exp((p_ok[0] + p_bad[0]) / 2))
        step = (self.aim - p_ok[1]) / min(p_bad[1] - p_ok[1], -1e-300)
        return round(self.size - math.exp(p_ok[0] + step * (p_bad[0] - p_ok[0])))


def _reporter(effective_at: Callable[[int], float], steps: int) -> Callable[[int, int], float]:
    """``effective_at`` that reports each analysis as progress (of about ``steps``).

    A search that runs past the estimate reports its own count as the total, so that no bar
    shows more done than in all.
    """

    def analysed(k: int, done: int) -> float:
        value = effective_at(k)
        total = max(steps, done)
        progress.report("effective target", done, total, f"{value:.4f} at {k} removed")
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
