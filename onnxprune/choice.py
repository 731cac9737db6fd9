"""Which pruned model ships: the Pareto front of accuracy against a cost, and the recommendation.

A sweep or a batch gives candidates: pruned models, each with an accuracy (higher is better), its
MACs by nonzero weights and file size (lower is better), its speedup over the dense model (higher
is better) and whether it passed the gate. Two questions a deployment asks of them:

- which candidates are worth looking at: the **Pareto front**, those that no other candidate
  beats in both accuracy and the cost (at least as good in both, better in one);
- which one to ship: the **recommended** model is the most compressed one that passed the gate,
  fewest MACs first, then the smallest file; none when no candidate passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from onnxprune.errors import InvalidOptionError

Point = tuple[float, float] | None
"""Two figures, both higher-is-better; ``None`` for a candidate that has no such figures."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pruned model as the choice sees it.

    Attributes:
        name: what reports call it (a method and sparsity, a model path).
        passed: whether it passed the gate.
        macs: multiply-accumulates by nonzero weights (``None``: unknown).
        size_bytes: bytes of the model file (``None``: unknown).
    """

    name: str
    passed: bool
    macs: int | None
    size_bytes: int | None


def pareto_front(points: Sequence[Point]) -> tuple[bool, ...]:
    """Per point, whether it is on the Pareto front of the points (both figures maximized).

    A point is on the front when no other point is at least as high in both figures and higher
    in one. Equal points are all on the front; ``None`` never is.

    Example:
        >>> pareto_front([(0.9, 1.0), (0.8, 2.0), (0.7, 1.5), (0.9, 1.0), None])
        (True, True, False, True, False)
    """
    return tuple(
        p is not None and not any(q is not None and _dominates(q, p) for q in points)
        for p in points
    )


def _dominates(q: tuple[float, float], p: tuple[float, float]) -> bool:
    return q[0] >= p[0] and q[1] >= p[1] and q != p


def accuracy_vs_cost(accuracy: float | None, cost: float | None) -> Point:
    """The point of a candidate for a front of accuracy against a cost to minimize (MACs)."""
    return None if accuracy is None or cost is None else (accuracy, -cost)


def accuracy_vs_gain(accuracy: float | None, gain: float | None) -> Point:
    """The point of a candidate for a front of accuracy against a gain to maximize (speedup)."""
    return None if accuracy is None or gain is None else (accuracy, gain)


def recommend(candidates: Sequence[Candidate]) -> int | None:
    """The index of the recommended candidate, ``None`` when none passed the gate.

    Among those that passed: fewest MACs (unknown counts last), then the smallest file (unknown
    last), then the first given.

    Example:
        >>> recommend([Candidate("a", True, 100, 10), Candidate("b", True, 50, 20),
        ...            Candidate("c", False, 10, 5), Candidate("d", True, 50, 15)])
        3
        >>> recommend([Candidate("c", False, 10, 5)]) is None
        True
    """
    passed = [i for i, c in enumerate(candidates) if c.passed]
    if not passed:
        return None

    def key(i: int) -> tuple:
        c = candidates[i]
        return (c.macs is None, c.macs or 0, c.size_bytes is None, c.size_bytes or 0, i)

    return min(passed, key=key)


def gate_options(max_accuracy_drop: float | None, min_agreement: float | None) -> dict[str, float]:
    """The gate a sweep or batch judges every model with, each threshold checked.

    Raises:
        InvalidOptionError: a threshold outside [0, 1].

    Example:
        >>> gate_options(0.01, None)
        {'max_accuracy_drop': 0.01}
    """
    gate = {"max_accuracy_drop": max_accuracy_drop, "min_agreement": min_agreement}
    for name, value in gate.items():
        if value is not None and not 0.0 <= value <= 1.0:
            flag = name.replace("_", "-")
            raise InvalidOptionError(f"--{flag} {value!r} must be a fraction in [0, 1]")
    return {name: value for name, value in gate.items() if value is not None}
