"""Benchmark the prune step against torch.nn.utils.prune, and the effective-target search.

On ResNet-50-sized random weights (the light ResNet-50 of the onnx package, weights replaced by
random initializers), in the same run:

- onnxprune's prune step for 90% global magnitude pruning (magnitude scores, the global
  allocation, the masks) vs ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured)`` on
  the same tensors; prints both and the ratio (target <= 0.05);
- the whole ``prune()`` call (load, graph, step, applying masks, report) for reference;
- a 99% *effective* sparsity target, the whole ``prune()`` call, against one analysis of the
  model (``analyze``; best of ``--repeat`` each, interleaved so that both see the same load;
  target <= 3.0), on the dense random weights and on the issue's case, the same weights under a
  90% random mask. For reference (no target), a plain ``prune()`` to the direct sparsity the
  search ended at, timed in the same rounds: what any prune costs besides the search (loading,
  scores, masks, writing the model and its report, itself an analysis), and the difference,
  what the search costs; and what handing back the pruned weights alone costs, whoever does it:
  each masked weight turned into bytes and copied into a ``TensorProto`` (protobuf takes
  ``bytes`` only, and copies them), in analyses.

    .venv/bin/python benchmarks/prune.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from _models import LIGHT, best_interleaved, best_time, random_weights  # benchmarks/ is on sys.path
from _results import print_result
from onnx import numpy_helper

import onnxprune
from onnxprune.pruners.allocations.global_ import global_masks
from onnxprune.pruners.registry import ScoreContext, get_score

BAR, EFFECTIVE_BAR = 0.05, 3.0


def prune_step(weights: dict[str, np.ndarray], target: float) -> dict[str, np.ndarray]:
    """Scores, global allocation and masks: what ``prune`` does once the weights are in memory.

    ``global_masks`` is the path ``prune_weights`` takes for the global allocation without a
    minimum threshold: one selection over all scores, then one comparison per layer.
    """
    scores = get_score("magnitude").fn(weights, ScoreContext(graph=None, model=None))
    shapes = {name: w.shape for name, w in weights.items()}
    return global_masks(shapes, target, scores)


def torch_step(weights: dict[str, np.ndarray], target: float) -> None:
    """The same with torch.nn.utils.prune (module parameters built from the same tensors)."""
    import torch
    from torch.nn.utils import prune

    holders = []
    for w in weights.values():
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
        holders.append((module, "weight"))
    prune.global_unstructured(holders, pruning_method=prune.L1Unstructured, amount=target)


def handing_back(model: onnx.ModelProto, masks: dict[str, np.ndarray]) -> None:
    """Each masked weight's new data as a ``TensorProto``'s bytes: what a pruned model holds.

    The masked values are made by a multiplication (the cheapest masking) and copied into a
    fresh tensor: no model copy, no checks, no report.
    """
    for tensor in model.graph.initializer:
        if tensor.name in masks:
            value = np.multiply(numpy_helper.to_array(tensor), masks[tensor.name])
            onnx.TensorProto().raw_data = value.tobytes()


def effective_target(tmp: Path, mask: float, repeat: int) -> bool:
    """The 99% effective target on ResNet-50 with a ``mask`` share of random zeros."""
    path = tmp / f"resnet50-{mask}.onnx"
    random_weights(LIGHT / "light_resnet50.onnx", path, sparsity=mask)
    model = onnx.load(path)
    result = onnxprune.prune(model, sparsity=0.99, effective=True)
    direct = result.report.direct_sparsity
    best = best_interleaved(
        {
            "analysis": lambda: onnxprune.analyze(model),
            "effective": lambda: onnxprune.prune(model, sparsity=0.99, effective=True),
            "plain": lambda: onnxprune.prune(model, sparsity=direct),
            "handing back": lambda: handing_back(model, result.masks),
        },
        repeat=repeat,
    )
    one, took, plain = best["analysis"], best["effective"], best["plain"]
    floor = best["handing back"]
    masked = f"{mask:.0%} random mask" if mask else "dense"
    print(
        f"99% effective target ({masked}): {took:.2f} s, {result.analyses} analyses, reached "
        f"effective {result.report.effective_sparsity:.5f} at direct {direct:.5f}; one "
        f"analysis {one:.2f} s; a plain prune to the same direct sparsity {plain:.2f} s "
        f"({plain / one:.1f} analyses: load, scores, masks, writing and the report), so the "
        f"search itself costs {(took - plain) / one:.1f} analyses; handing back the masked "
        f"weights as protobuf bytes alone costs {floor / one:.1f} analyses"
    )
    return print_result(
        f"99% effective target / one analysis (ResNet-50, {masked})",
        f"<= {EFFECTIVE_BAR}",
        f"{took / one:.1f} ({result.analyses} analyses)",
        took / one <= EFFECTIVE_BAR,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the ratio is above the bar."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        random_weights(LIGHT / "light_resnet50.onnx", path, sparsity=0.0)
        model = onnx.load(path)
        kernels = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
        weights = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in kernels
        }
        n = sum(w.size for w in weights.values())
        ours = best_time(prune_step, weights, 0.9, repeat=args.repeat)
        theirs = best_time(torch_step, weights, 0.9, repeat=args.repeat)
        whole = best_time(lambda: onnxprune.prune(model, sparsity=0.9), repeat=args.repeat)
        ok = ours / theirs <= BAR
        print(
            f"90% global magnitude, {n:,} weights: prune step {ours:.3f} s, torch "
            f"global_unstructured {theirs:.3f} s, ratio {ours / theirs:.3f} (target <= {BAR})"
            f"{'' if ok else '  MISSED'}"
        )
        print_result(
            "magnitude prune step / torch global_unstructured (ResNet-50, 90%)",
            f"<= {BAR}",
            f"{ours / theirs:.3f}",
            ok,
        )
        print(f"whole prune() call (load, graph, step, apply, report): {whole:.3f} s")
        for mask in (0.0, 0.9):
            ok &= effective_target(Path(tmp), mask, args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
