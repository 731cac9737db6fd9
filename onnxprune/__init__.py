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
from onnxprune.report import LayerSparsity, SparsityReport
from onnxprune.sparsity import analyze

__all__ = [
    "DatasetError",
    "InvalidModelError",
    "InvalidOptionError",
    "LayerSparsity",
    "LimitExceededError",
    "OnnxpruneError",
    "PruneResult",
    "ShapeError",
    "SparsityReport",
    "analyze",
    "load_model",
    "prune",
    "save_model",
]
__version__ = "0.1.0"
