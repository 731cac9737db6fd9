"""PyTorch fine-tuning hooks: masks from ONNX back onto modules, retraining, export again.

Needs the ``torch`` extra (``pip install 'onnxprune[torch]'``); ``import onnxprune`` never
imports it::

    import onnxprune.torch as opt

    handle = opt.apply_masks(model, "pruned.masks.npz", onnx_model="pruned.onnx")
    result = opt.finetune(model, train_loader, val_loader, schedule={0: 1e-2, 3: 1e-3}, epochs=6)
    handle.make_permanent()
    opt.export_onnx(model, "finetuned.onnx", "pruned.onnx", masks=handle)  # checks the masks
"""

try:
    import torch as _torch  # noqa: F401  (fails here, with the hint below, when torch is missing)
except ImportError as e:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError(
        "onnxprune.torch needs PyTorch, which is not installed: "
        "pip install 'onnxprune[torch]' (see the README for the CPU wheel)"
    ) from e

from onnxprune.torch.export import ExportResult, LayerCheck, MaskCheckError, export_onnx
from onnxprune.torch.finetune import EpochRecord, FinetuneResult, evaluate, finetune
from onnxprune.torch.mapping import (
    MappingReport,
    MaskMappingError,
    Match,
    Unresolved,
    map_weights,
)
from onnxprune.torch.masking import MaskHandle, WeightMask, apply_masks

__all__ = [
    "EpochRecord",
    "ExportResult",
    "FinetuneResult",
    "LayerCheck",
    "MappingReport",
    "MaskCheckError",
    "MaskHandle",
    "MaskMappingError",
    "Match",
    "Unresolved",
    "WeightMask",
    "apply_masks",
    "evaluate",
    "export_onnx",
    "finetune",
    "map_weights",
]
