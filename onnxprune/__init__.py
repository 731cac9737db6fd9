"""onnxprune: prune ONNX models and report direct and effective sparsity.

The entries (``analyze``, ``prune``, ``compact``, ``validate``, ``structured_prune``) take a path,
bytes or an ``onnx.ModelProto``; ``prune`` takes ``PruneOptions`` (or its fields as keywords) and
chooses between pruning in memory, tensor by tensor (external data) and structured pruning.
``analyze_sensitivity`` prunes each layer of a model file alone and measures it (``onnxprune
sensitivity``). The core works without PyTorch; the optional ``onnxprune.torch`` hooks need the
``torch`` extra.

Each name loads its module on first use (``onnxprune.lazy``): ``import onnxprune`` imports
neither ONNX nor NumPy, so the command line starts fast.
"""

from onnxprune.lazy import attach as _attach

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _attach(
    __name__,
    {
        "onnxprune.errors": [
            "DatasetError",
            "InvalidModelError",
            "InvalidOptionError",
            "LimitExceededError",
            "OnnxpruneError",
            "OutputError",
            "ShapeError",
        ],
        "onnxprune.model": ["load_model", "save_model"],
        "onnxprune.options": ["PruneOptions"],
        "onnxprune.pruners.prune": ["PruneResult"],
        "onnxprune.report": ["GateResult", "LayerSparsity", "SparsityReport", "ValidationResult"],
        "onnxprune.sensitivity": ["SensitivityResult", "analyze_sensitivity"],
        "onnxprune.sparsity": ["analyze"],
        "onnxprune.structured": ["CompactResult", "StructuredResult", "structured_prune"],
        "onnxprune.validation": ["load_dataset", "validate"],
        "onnxprune.verbs": ["compact", "prune"],
    },
)
