"""Structured pruning: remove whole units (channels, neurons) from the ONNX graph itself."""

from onnxprune.structured.blocked import BlockedGroup
from onnxprune.structured.compact import CompactResult, compact
from onnxprune.structured.prune import CRITERIA, SCOPES, StructuredResult, structured_prune
from onnxprune.structured.reconstruct import LayerRefit, Reconstruction

__all__ = [
    "CRITERIA",
    "SCOPES",
    "BlockedGroup",
    "CompactResult",
    "LayerRefit",
    "Reconstruction",
    "StructuredResult",
    "compact",
    "structured_prune",
]
