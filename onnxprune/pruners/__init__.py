"""Pruners: scores, layerwise allocations, targets in direct or effective sparsity, masks.

The package exports its extension points, the registries (``registry.py``): a new score, allocation
or structured criterion registers with ``@score``, ``@allocation`` or ``@criterion`` and is found
by name. The registries import the score, allocation and criterion modules when first read;
importing this package imports none of them.
"""

from onnxprune.pruners.registry import (
    ALIASES,
    ALLOCATIONS,
    CRITERIA,
    SCORES,
    Method,
    ScoreContext,
    allocation,
    criterion,
    get_allocation,
    get_score,
    score,
)

__all__ = [
    "ALIASES",
    "ALLOCATIONS",
    "CRITERIA",
    "SCORES",
    "Method",
    "ScoreContext",
    "allocation",
    "criterion",
    "get_allocation",
    "get_score",
    "score",
]
