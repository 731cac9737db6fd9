"""The pruner registries: scores, allocations and structured criteria, filled by decorators.

Entries register with ``@score("lamp", "summary")``, ``@allocation("igq", "summary")`` and
``@criterion("l1", "summary")``; a name registered twice is refused. Each registry imports the
modules of its entries (``scores/``, ``allocations/``, ``criteria.py``) on its first read, so it
is complete whoever reads it, and importing ``onnxprune`` loads none of them. Those modules
import NumPy at the top and anything heavier (ONNX, ONNX Runtime, SciPy, the graph) where it is
used, so that listing the methods (``onnxprune methods``) stays fast.

A **score** maps weights to importance (higher = keep):
``fn(weights, ctx) -> {name: scores}``, ``weights`` keyed by layer name (the stored tensor a
pruner rewrites), arrays in the layout the layer consumes (conv ``[O, C/G, *k]``, matmul as the
node reads it).

An **allocation** decides how many weights each layer loses:
``fn(shapes, target, scores) -> {name: count}``, with counts that add up to
``round(target * total)`` (the overall direct sparsity is hit to within one weight). Most
allocations only look at the shapes; ``global`` looks at the scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.registry import Registry

if TYPE_CHECKING:
    import onnx

    from onnxprune.graph.build import ConnectivityGraph


@dataclass(frozen=True)
class ScoreContext:
    """What a score may need beyond the weights.

    Attributes:
        graph: the model's connectivity graph (SynFlow runs the linearized network over it).
        model: the model itself (the activation score runs it in ONNX Runtime).
        target: the overall sparsity being pruned to (SynFlow's schedule ends there).
        seed: seed of every random choice.
        calibration: arrays keyed by graph input name (the activation score needs them).
        rounds: SynFlow's number of pruning rounds.
        masks: masks already in force (``False`` = pruned), keyed like the weights.
    """

    graph: ConnectivityGraph
    model: onnx.ModelProto
    target: float = 0.0
    seed: int = 0
    calibration: Mapping[str, np.ndarray] | None = None
    rounds: int = 100
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)


ScoreFn = Callable[[Mapping[str, np.ndarray], ScoreContext], dict[str, np.ndarray]]
AllocationFn = Callable[
    [Mapping[str, tuple[int, ...]], float, Mapping[str, np.ndarray]], dict[str, int]
]


@dataclass(frozen=True, slots=True)
class Method:
    """A registered score, allocation or criterion: the function and a summary for ``methods``."""

    name: str
    fn: Callable
    summary: str


SCORES: Registry[Method] = Registry("score", ("onnxprune.pruners.scores",))
ALLOCATIONS: Registry[Method] = Registry("allocation", ("onnxprune.pruners.allocations",))
CRITERIA: Registry[Method] = Registry("criterion", ("onnxprune.pruners.criteria",))
"""Structured filter criteria (``onnxprune.structured``): per dependency group, higher = keep."""

ALIASES = {"uniform+": "uniform_plus", "global_magnitude": "global"}
"""CLI spellings that differ from the names used in the code and the papers."""


def score(name: str, summary: str) -> Callable[[ScoreFn], ScoreFn]:
    """Register a score function under ``name``."""
    return _register(SCORES, name, summary)


def allocation(name: str, summary: str) -> Callable[[AllocationFn], AllocationFn]:
    """Register an allocation function under ``name``."""
    return _register(ALLOCATIONS, name, summary)


def criterion(name: str, summary: str) -> Callable[[Callable], Callable]:
    """Register a structured filter criterion under ``name``."""
    return _register(CRITERIA, name, summary)


def _register(table: Registry[Method], name: str, summary: str) -> Callable:
    def register(fn: Callable) -> Callable:
        table.add(name, Method(name, fn, summary))
        return fn

    return register


def get_score(name: str) -> Method:
    """The score registered as ``name``.

    Raises:
        InvalidOptionError: no such score; the message lists the registered ones.
    """
    return _get(SCORES, "score", name)


def get_allocation(name: str) -> Method:
    """The allocation registered as ``name`` (CLI spellings such as ``uniform+`` accepted).

    Raises:
        InvalidOptionError: no such allocation; the message lists the registered ones.
    """
    return _get(ALLOCATIONS, "allocation", ALIASES.get(name, name))


def _get(table: Registry[Method], kind: str, name: str) -> Method:
    if name not in table:
        raise InvalidOptionError(
            f"unknown {kind} {name!r}; choose one of {', '.join(sorted(table))}"
        )
    return table[name]
