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

A score that **reconstructs** (SparseGPT) also re-fits the weights it keeps: it registers with
``reconstruct=fn``, ``fn(weights, ctx, targets) -> Reconstruction``, called once the scores and
the allocation have said how many weights each layer loses (``LayerTargets``), and its masks
and updated weights are what the prune writes. A score that reads calibration data registers
with ``calibrated=True`` (the shells then pass the data along, and refuse it for other scores).

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


@dataclass(frozen=True)
class LayerTargets:
    """What a reconstructing score prunes each layer to: a number of weights or an N:M pattern.

    Attributes:
        counts: weights to remove per layer (already-pruned ones included), or ``None``.
        nm: ``(n, m)``: keep ``n`` of every ``m`` consecutive weights along the input.
        skip_indivisible: with ``nm``, leave a layer whose input size is not a multiple of M.
    """

    counts: Mapping[str, int] | None = None
    nm: tuple[int, int] | None = None
    skip_indivisible: bool = False


@dataclass(frozen=True)
class Reconstruction:
    """Masks and re-fitted weights from a reconstructing score, in the consumed layout.

    Attributes:
        masks: ``True`` = kept, keyed by layer name.
        weights: the new values of the kept weights (zero where pruned), keyed like ``masks``.
        warnings: one line each, for the prune's result.
    """

    masks: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    warnings: tuple[str, ...] = ()


ScoreFn = Callable[[Mapping[str, np.ndarray], ScoreContext], dict[str, np.ndarray]]
ReconstructFn = Callable[[Mapping[str, np.ndarray], ScoreContext, LayerTargets], Reconstruction]
AllocationFn = Callable[
    [Mapping[str, tuple[int, ...]], float, Mapping[str, np.ndarray]], dict[str, int]
]


@dataclass(frozen=True, slots=True)
class Method:
    """A registered score, allocation or criterion: the function and a summary for ``methods``.

    Attributes:
        name: the registered name.
        fn: the function.
        summary: one line for ``onnxprune methods``.
        calibrated: a score that reads calibration data.
        reconstruct: a score's re-fit of the kept weights (``ReconstructFn``), or ``None``.
        per_output: a score whose weights compete within their output row (see ``score``).
        reads_graph: a score that runs the main graph (SynFlow's flow, calibrated inputs), so
            it cannot score weights inside ``If``/``Loop``/``Scan`` bodies.
    """

    name: str
    fn: Callable
    summary: str
    calibrated: bool = False
    reconstruct: Callable | None = None
    per_output: bool = False
    reads_graph: bool = False


SCORES: Registry[Method] = Registry("score", ("onnxprune.pruners.scores",))
ALLOCATIONS: Registry[Method] = Registry("allocation", ("onnxprune.pruners.allocations",))
CRITERIA: Registry[Method] = Registry("criterion", ("onnxprune.pruners.criteria",))
"""Structured filter criteria (``onnxprune.structured``): per dependency group, higher = keep."""

ALIASES = {"uniform+": "uniform_plus", "global_magnitude": "global"}
"""CLI spellings that differ from the names used in the code and the papers."""


def score(
    name: str,
    summary: str,
    *,
    calibrated: bool = False,
    reconstruct: ReconstructFn | None = None,
    per_output: bool = False,
    reads_graph: bool = False,
) -> Callable[[ScoreFn], ScoreFn]:
    """Register a score function under ``name``.

    Args:
        name: the name ``--score`` takes.
        summary: one line for ``onnxprune methods``.
        calibrated: the score reads calibration data (``ScoreContext.calibration``).
        reconstruct: the score also re-fits the kept weights (see the module docstring).
        per_output: the score compares weights of one output row only (Wanda's comparison
            group): each row is pruned to its layer's target, and an allocation that compares
            layers sees each row's scores over their root mean square.
        reads_graph: the score runs the main graph, not the bodies of its ``If``/``Loop``/
            ``Scan`` nodes (a calibrated score does too); weights in bodies are left alone.
    """
    extra = {
        "calibrated": calibrated,
        "reconstruct": reconstruct,
        "per_output": per_output,
        "reads_graph": reads_graph or calibrated,
    }
    return _register(SCORES, name, summary, **extra)


def allocation(name: str, summary: str) -> Callable[[AllocationFn], AllocationFn]:
    """Register an allocation function under ``name``."""
    return _register(ALLOCATIONS, name, summary)


def criterion(name: str, summary: str) -> Callable[[Callable], Callable]:
    """Register a structured filter criterion under ``name``."""
    return _register(CRITERIA, name, summary)


def _register(table: Registry[Method], name: str, summary: str, **extra: object) -> Callable:
    def register(fn: Callable) -> Callable:
        table.add(name, Method(name, fn, summary, **extra))
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
