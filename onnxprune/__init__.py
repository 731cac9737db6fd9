"""onnxprune: prune ONNX models and report direct and effective sparsity.

The core (analyze, and later prune, validate, serve) works without PyTorch; the optional
``onnxprune.torch`` hooks need the ``torch`` extra.
"""

from onnxprune.errors import (
    DatasetError,
    InvalidModelError,
    InvalidOptionError,
    LimitExceededError,
    OnnxpruneError,
    ShapeError,
)
from onnxprune.model import load_model, save_model
from onnxprune.pruners.prune import PruneResult, prune
from onnxprune.report import GateResult, LayerSparsity, SparsityReport, ValidationResult
from onnxprune.sparsity import analyze
from onnxprune.validate import load_dataset, validate

__all__ = [
    "DatasetError",
    "GateResult",
    "InvalidModelError",
    "InvalidOptionError",
    "LayerSparsity",
    "LimitExceededError",
    "OnnxpruneError",
    "PruneResult",
    "ShapeError",
    "SparsityReport",
    "ValidationResult",
    "analyze",
    "load_dataset",
    "load_model",
    "prune",
    "save_model",
    "validate",
]
__version__ = "0.1.0"
