"""Prune -> fine-tune -> export -> validate, on the bundled digits MLP (a few seconds on a CPU).

1. ``onnxprune.prune`` removes 95% of ``models/mlp_digits.onnx``'s weights (global magnitude):
   the accuracy on the digits test split collapses.
2. ``onnxprune.torch.apply_masks`` puts the masks on the PyTorch MLP (``models/build.py``'s
   ``Mlp``, weights read from the dense ONNX file), and ``finetune`` retrains it with SGD and a
   two-stage learning-rate schedule on the training split of ``models/build.py``.
3. ``make_permanent`` bakes the zeros in; ``export_onnx`` writes ``finetuned.onnx`` with the
   original's input names and opset and checks that every mask held.
4. ``onnxprune.validate`` measures all three models with ONNX Runtime and ``analyze`` compares
   the direct sparsity before and after fine-tuning.

Run from the repository root (needs the ``torch`` and ``dev`` extras)::

    .venv/bin/python examples/finetune_digits.py [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.utils.data import DataLoader, TensorDataset

import onnxprune
import onnxprune.torch as opt
from onnxprune.pruners.masks import save_masks

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SPARSITY = 0.95
SCHEDULE = {0: 0.1, 5: 0.01}  # two stages; the first is the one trainability accuracy averages
EPOCHS = 8
BATCH = 32


@dataclass(frozen=True)
class RoundTrip:
    """What the round trip measured (accuracies on the digits test split, ONNX Runtime)."""

    dense_accuracy: float
    pruned_accuracy: float
    finetuned_accuracy: float
    pruned_direct_sparsity: float
    finetuned_direct_sparsity: float
    mapping: opt.MappingReport
    finetune: opt.FinetuneResult
    export: opt.ExportResult
    seconds: float


def run(
    out: Path, *, seed: int = 0, epochs: int = EPOCHS, schedule: dict[int, float] | None = None
) -> RoundTrip:
    """Run the round trip, writing ``pruned.onnx``, its masks and ``finetuned.onnx`` to ``out``."""
    start = time.perf_counter()
    schedule = dict(SCHEDULE if schedule is None else schedule)
    dense_path, data = MODELS / "mlp_digits.onnx", MODELS / "digits_test.npz"
    pruned_path, masks_path = out / "pruned.onnx", out / "pruned.masks.npz"
    pruned = onnxprune.prune(dense_path, sparsity=SPARSITY)
    onnxprune.save_model(pruned.model, pruned_path)
    save_masks(pruned.masks, masks_path)

    torch.manual_seed(seed)
    build = _models_build()
    model = build.Mlp()
    _load_onnx_weights(model, dense_path)
    handle = opt.apply_masks(model, masks_path, onnx_model=pruned_path)
    train, val = _loaders(build, data, seed)
    history = opt.finetune(model, train, val, schedule=schedule, epochs=epochs)
    handle.make_permanent()
    exported = opt.export_onnx(model, out / "finetuned.onnx", pruned_path, masks=handle)

    def accuracy(path: Path) -> float:
        return onnxprune.validate(path, data, provider="cpu").top1

    return RoundTrip(
        dense_accuracy=accuracy(dense_path),
        pruned_accuracy=accuracy(pruned_path),
        finetuned_accuracy=accuracy(exported.path),
        pruned_direct_sparsity=onnxprune.analyze(pruned_path).direct_sparsity,
        finetuned_direct_sparsity=onnxprune.analyze(exported.path).direct_sparsity,
        mapping=handle.report,
        finetune=history,
        export=exported,
        seconds=time.perf_counter() - start,
    )


def _models_build():
    """``models/build.py``: the ``Mlp`` architecture and the train/test split (one definition)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("models.build")


def _load_onnx_weights(model: torch.nn.Module, path: Path) -> None:
    """Copy the ONNX initializers into the module (the exporter kept the parameter names)."""
    proto = onnx.load(str(path))
    state = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer
    }
    model.load_state_dict(state)


def _loaders(build, data: Path, seed: int) -> tuple[DataLoader, DataLoader]:
    x_train, _, y_train, _ = build._split()
    train = TensorDataset(
        torch.from_numpy(x_train.reshape(-1, 64)), torch.from_numpy(y_train).long()
    )
    with np.load(data) as test:
        val = TensorDataset(torch.from_numpy(test["x"]), torch.from_numpy(test["labels"]))
    shuffle = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=BATCH, shuffle=True, generator=shuffle),
        DataLoader(val, batch_size=256),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the round trip and print a short summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the models (default: temporary)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        r = run(out)
    f = r.finetune
    lines = [
        f"dense      top-1 {r.dense_accuracy:.2%}  (models/mlp_digits.onnx)",
        f"pruned     top-1 {r.pruned_accuracy:.2%}  direct sparsity "
        f"{r.pruned_direct_sparsity:.2%} (global magnitude)",
        f"masks      {r.mapping.summary().splitlines()[0]}",
        f"fine-tune  SGD momentum {f.momentum}, weight decay {f.weight_decay}, schedule "
        f"{dict(f.schedule)}, {f.epochs} epochs: trainability {f.trainability_accuracy:.2%}, "
        f"final {f.final_accuracy:.2%}",
        f"exported   top-1 {r.finetuned_accuracy:.2%}  direct sparsity "
        f"{r.finetuned_direct_sparsity:.2%}, masks held: {'yes' if r.export.held else 'NO'}",
        f"recovered  {(r.finetuned_accuracy - r.dense_accuracy) * 100:+.2f} points against "
        f"dense, in {r.seconds:.1f} s",
    ]
    print("\n".join(lines))  # noqa: T201 - an example reports its numbers


if __name__ == "__main__":
    main()
