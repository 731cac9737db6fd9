"""Structured pruning: remove whole units (channels, neurons) from the ONNX graph itself.

``analyze`` reads a model's units through ``structured.units`` and ``structured.compact``; the
pruning entry (``structured.prune``, which imports the pruners) and the re-fit load on first use
(``onnxprune.lazy``), so it does not pay for them. ``compact`` loads with the package: it is
also the name of its module, which would hide a lazy export of that name once imported.
"""

from onnxprune.lazy import attach as _attach
from onnxprune.structured.compact import CompactResult, compact

__getattr__, __dir__, _lazy = _attach(
    __name__,
    {
        "onnxprune.structured.blocked": ["BlockedGroup"],
        "onnxprune.structured.prune": [
            "CRITERIA",
            "SCOPES",
            "StructuredResult",
            "structured_prune",
        ],
        "onnxprune.structured.reconstruct": ["LayerRefit", "Reconstruction"],
    },
)
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
