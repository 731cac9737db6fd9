"""Prune -> fine-tune -> export -> validate, on the bundled digits MLP (a few seconds on a CPU).

1. ``onnxprune.prune`` removes 95% of ``models/mlp_digits.onnx``'s weights (global magnitude):
   the accuracy on the digits test split collapses. With ``--structured l1|l2|random``,
   ``onnxprune.structured.structured_prune`` removes half of the hidden neurons of each layer
   instead (``--sparsity``), and its zeroed model in the original shapes is the pruned model
   (its masks: the nonzero entries of each prunable weight).
2. ``onnxprune.torch.apply_masks`` puts the masks on the PyTorch MLP (``models/build.py``'s
   ``Mlp``, weights read from the dense ONNX file), and ``finetune`` retrains it with SGD and a
   two-stage learning-rate schedule on the training split of ``models/build.py``.
3. ``make_permanent`` bakes the zeros in; ``export_onnx`` writes ``finetuned.onnx`` with the
   original's input names and opset and checks that every mask held.
4. ``onnxprune.validate`` measures all three models with ONNX Runtime and ``analyze`` compares
   the direct sparsity before and after fine-tuning.
5. Structured mode only: ``onnxprune.structured.compact`` cuts the zeroed neurons out of the
   fine-tuned model (``finetuned_compact.onnx``, same outputs), and ``validate`` times it against
   the dense model on the ONNX Runtime CPU provider.

Run from the repository root (needs the ``torch`` and ``dev`` extras)::

    .venv/bin/python examples/finetune_digits.py [--out DIR]
    .venv/bin/python examples/finetune_digits.py --structured l1 [--sparsity 0.5] [--out DIR]
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
from onnxprune.structured import CRITERIA, StructuredResult, compact, structured_prune

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SPARSITY = 0.95  # unstructured: fraction of the weights
STRUCTURED_SPARSITY = 0.5  # structured: fraction of each hidden layer's neurons
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
    # Structured mode only (None otherwise): the criterion, (kept, total) neurons per layer,
    # weight counts of the dense and the compacted fine-tuned model, the compacted model's top-1,
    # and its ONNX Runtime CPU run against the dense model (latencies, speedup).
    criterion: str | None = None
    units: dict[str, tuple[int, int]] | None = None
    dense_params: int | None = None
    compact_params: int | None = None
    compact_accuracy: float | None = None
    speed: onnxprune.ValidationResult | None = None


def run(
    out: Path,
    *,
    structured: str | None = None,
    sparsity: float | None = None,
    seed: int = 0,
    epochs: int = EPOCHS,
    schedule: dict[int, float] | None = None,
) -> RoundTrip:
    """Run the round trip, writing ``pruned.onnx``, its masks and ``finetuned.onnx`` to ``out``.

    Args:
        out: the folder to write to.
        structured: a structured criterion (``l1``, ``l2``, ``random``) to remove neurons
            instead of single weights; also writes ``finetuned_compact.onnx``.
        sparsity: of the weights (default 0.95), or of each hidden layer's neurons when
            ``structured`` (default 0.5).
        seed: for the training data's shuffling, torch and the ``random`` criterion.
        epochs: of fine-tuning.
        schedule: ``{first epoch: learning rate}`` (default ``SCHEDULE``).
    """
    start = time.perf_counter()
    schedule = dict(SCHEDULE if schedule is None else schedule)
    dense_path, data = MODELS / "mlp_digits.onnx", MODELS / "digits_test.npz"
    pruned_path, masks_path = out / "pruned.onnx", out / "pruned.masks.npz"
    result = _prune(dense_path, pruned_path, masks_path, structured, sparsity, seed)

    torch.manual_seed(seed)
    build = _models_build()
    model = build.Mlp()
    _load_onnx_weights(model, dense_path)
    handle = opt.apply_masks(model, masks_path, onnx_model=pruned_path)
    train, val = _loaders(build, data, seed)
    history = opt.finetune(model, train, val, schedule=schedule, epochs=epochs)
    handle.make_permanent()
    exported = opt.export_onnx(model, out / "finetuned.onnx", pruned_path, masks=handle)

    def accuracy(model: Path | onnx.ModelProto) -> float:
        return onnxprune.validate(model, data, provider="cpu").top1

    extra = {} if result is None else _compacted(result, structured, exported.path, data)
    return RoundTrip(
        dense_accuracy=accuracy(dense_path),
        pruned_accuracy=accuracy(pruned_path if result is None else result.model),
        finetuned_accuracy=accuracy(exported.path),
        pruned_direct_sparsity=onnxprune.analyze(pruned_path).direct_sparsity,
        finetuned_direct_sparsity=onnxprune.analyze(exported.path).direct_sparsity,
        mapping=handle.report,
        finetune=history,
        export=exported,
        seconds=time.perf_counter() - start,
        **extra,
    )


def _prune(
    dense: Path,
    pruned: Path,
    masks: Path,
    structured: str | None,
    sparsity: float | None,
    seed: int,
) -> StructuredResult | None:
    """Write the pruned model and its masks; the structured result, ``None`` when unstructured."""
    if structured is None:
        result = onnxprune.prune(dense, sparsity=SPARSITY if sparsity is None else sparsity)
        onnxprune.save_model(result.model, pruned)
        save_masks(result.masks, masks)
        return None
    sparsity = STRUCTURED_SPARSITY if sparsity is None else sparsity
    result = structured_prune(
        onnx.load(str(dense)), sparsity=sparsity, criterion=structured, seed=seed
    )
    onnxprune.save_model(result.masked, pruned)
    weights = {t.name: numpy_helper.to_array(t) for t in result.masked.graph.initializer}
    layers = onnxprune.analyze(result.masked).layers
    save_masks({x.name: weights[x.name] != 0 for x in layers}, masks)
    return result


def _compacted(result: StructuredResult, criterion: str, exported: Path, data: Path) -> dict:
    """Cut the zeroed neurons out of the fine-tuned model; count, measure and time it."""
    compacted = compact(onnx.load(str(exported)))
    path = exported.with_name("finetuned_compact.onnx")
    onnxprune.save_model(compacted.model, path)
    speed = onnxprune.validate(path, data, baseline=MODELS / "mlp_digits.onnx", provider="cpu")
    return {
        "criterion": criterion,
        "units": result.units,
        "dense_params": result.compaction.params_before,
        "compact_params": compacted.params_after,
        "compact_accuracy": speed.top1,
        "speed": speed,
    }


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
    parser.add_argument(
        "--structured",
        choices=sorted(CRITERIA),
        help="remove whole neurons by this criterion instead of single weights, then compact",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        help=f"fraction of the weights (default {SPARSITY}) or, with --structured, of each "
        f"hidden layer's neurons (default {STRUCTURED_SPARSITY})",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        r = run(out, structured=args.structured, sparsity=args.sparsity)
    print("\n".join(summary(r)))  # noqa: T201 - an example reports its numbers


def summary(r: RoundTrip) -> list[str]:
    """The printed lines: accuracies, the schedule, and in structured mode size and latency."""
    f = r.finetune
    how = "global magnitude" if r.criterion is None else f"structured {r.criterion}, in place"
    lines = [
        f"dense      top-1 {r.dense_accuracy:.2%}  (models/mlp_digits.onnx)",
        f"pruned     top-1 {r.pruned_accuracy:.2%}  direct sparsity "
        f"{r.pruned_direct_sparsity:.2%} ({how})",
    ]
    if r.units is not None:
        kept = ", ".join(f"{name} {k}/{n}" for name, (k, n) in r.units.items())
        lines.append(f"neurons    kept {kept}")
    lines += [
        f"masks      {r.mapping.summary().splitlines()[0]}",
        f"fine-tune  SGD momentum {f.momentum}, weight decay {f.weight_decay}, schedule "
        f"{dict(f.schedule)}, {f.epochs} epochs: trainability {f.trainability_accuracy:.2%}, "
        f"final {f.final_accuracy:.2%}",
        f"exported   top-1 {r.finetuned_accuracy:.2%}  direct sparsity "
        f"{r.finetuned_direct_sparsity:.2%}, masks held: {'yes' if r.export.held else 'NO'}",
    ]
    if r.speed is not None:
        s = r.speed
        lines += [
            f"compacted  top-1 {r.compact_accuracy:.2%}  params {r.dense_params} -> "
            f"{r.compact_params} ({r.compact_params / r.dense_params:.2%} of dense)",
            f"latency    ORT CPU, batch {s.batch_size}, p50: dense "
            f"{s.baseline_latency_ms_p50:.4f} ms, compacted {s.latency_ms_p50:.4f} ms "
            f"(speedup {s.speedup:.2f}x, 95% CI {s.speedup_low:.2f}-{s.speedup_high:.2f})",
        ]
    lines.append(
        f"recovered  {(r.finetuned_accuracy - r.dense_accuracy) * 100:+.2f} points against "
        f"dense, in {r.seconds:.1f} s"
    )
    return lines


if __name__ == "__main__":
    main()
