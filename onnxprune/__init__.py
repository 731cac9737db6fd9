"""onnxprune: prune ONNX models and report direct and effective sparsity.

The entries (``analyze``, ``prune``, ``compact``, ``validate``, ``structured_prune``) take a path,
bytes or an ``onnx.ModelProto``; ``prune`` takes ``PruneOptions`` (or its fields as keywords) and
chooses between pruning in memory, tensor by tensor (external data) and structured pruning. The
core works without PyTorch; the optional ``onnxprune.torch`` hooks need the ``torch`` extra.
"""

from onnxprune.errors import (
    DatasetError,
    InvalidModelError,
    InvalidOptionError,
    LimitExceededError,
    OnnxpruneError,
    OutputError,
    ShapeError,
)
from onnxprune.model import load_model, save_model
from onnxprune.options import PruneOptions
from onnxprune.pruners.prune import PruneResult
from onnxprune.report import GateResult, LayerSparsity, SparsityReport, ValidationResult
from onnxprune.sparsity import analyze
from onnxprune.structured import CompactResult, StructuredResult, structured_prune
from onnxprune.validate import load_dataset, validate
from onnxprune.verbs import compact, prune

__all__ = [
    "CompactResult",
    "DatasetError",
    "GateResult",
    "InvalidModelError",
    "InvalidOptionError",
    "LayerSparsity",
    "LimitExceededError",
    "OnnxpruneError",
    "OutputError",
    "PruneOptions",
    "PruneResult",
    "ShapeError",
    "SparsityReport",
    "StructuredResult",
    "ValidationResult",
    "analyze",
    "compact",
    "load_dataset",
    "load_model",
    "prune",
    "save_model",
    "structured_prune",
    "validate",
]
__version__ = "0.1.0"
