"""Pruners: scores, layerwise allocations, targets in direct or effective sparsity, masks."""

from onnxprune.pruners import allocations, scores  # noqa: F401  (registers every entry)
