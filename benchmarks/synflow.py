"""Benchmark the SynFlow score against a torch implementation of the same rounds.

On ResNet-50-sized weights (the light ResNet-50 of the onnx package, random weights, dense), at a
64 x 64 input (the final average pool shrunk to match) so that 100 rounds take minutes, in the
same run:

- ours: ``synflow`` (``onnxprune/pruners/scores/synflow.py``), 100 rounds to 90% sparsity;
- torch: the same schedule on the linearized float64 network of PAPERS.md (``_linearized.py``),
  as the authors' code runs it (github.com/ganguli-lab/Synaptic-Flow, ``pruners.SynFlow`` and
  ``Pruner._global_mask``): each round, kernels ``|w| * mask`` as leaves, all-ones input,
  backward of the output's sum, scores ``|w| * grad`` (removed weights ``-inf``), one threshold
  over all of them by ``torch.kthvalue``, and the weights at most the threshold removed, so that
  ``(1 - t) ** (i / rounds)`` of the weights remain. float64, because the output of the float32
  net overflows (R is about 1e73 here). torch keeps its default threads (ours runs BLAS on one
  thread: the score's docstring says why).

Targets: ours no slower than torch (ratio <= 1.0), and the same final mask (the weights ours
prunes at the target against those torch's rounds pruned; float64 sums in another order can
break a near-tie the other way, so a few may differ). Prints two RESULT lines; exits 1 when
either is missed.

    .venv/bin/python benchmarks/synflow.py [--rounds 100] [--size 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from _models import LIGHT, random_weights  # benchmarks/ is on sys.path
from _results import print_result
from onnx import helper, numpy_helper

from onnxprune.graph.build import build_graph
from onnxprune.pruners.registry import ScoreContext, get_score

BAR, TARGET, AGREE = 1.0, 0.9, 0.999


def small_input(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """The model at a ``size`` x ``size`` input, its last average pool over what is left."""
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = size
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = size
    for node in model.graph.node:
        if node.op_type == "AveragePool":
            del node.attribute[:]
            side = size // 32  # ResNet-50 halves the map five times
            node.attribute.extend([helper.make_attribute("kernel_shape", [side, side])])
    return model


def ours(model: onnx.ModelProto, rounds: int) -> tuple[float, dict[str, np.ndarray]]:
    """Seconds of the SynFlow score (the graph built beforehand, as ``prune`` does), its scores."""
    graph = build_graph(model)
    weights = {layer.name: graph.weight(layer) for layer in graph.layers}
    ctx = ScoreContext(graph, model, target=TARGET, rounds=rounds)
    start = time.perf_counter()
    scores = get_score("synflow").fn(weights, ctx)
    return time.perf_counter() - start, scores


def theirs(model: onnx.ModelProto, rounds: int) -> tuple[float, dict[str, np.ndarray]]:
    """Seconds of the same rounds in torch (float64), and the final masks."""
    import torch
    from _linearized import linearized_output, prunable  # needs torch

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    names = prunable(model)
    start = time.perf_counter()
    magnitude = {n: torch.tensor(np.abs(inits[n]), dtype=torch.float64) for n in names}
    masks = {n: magnitude[n] != 0 for n in names}
    total = sum(m.numel() for m in masks.values())
    final_keep = total - round(TARGET * total)
    for i in range(1, rounds + 1):
        keep = max(final_keep, round(total * (1.0 - TARGET) ** (i / rounds)))
        leaves = {n: (magnitude[n] * masks[n]).requires_grad_() for n in names}
        linearized_output(model, inits, leaves).sum().backward()
        scores = {n: torch.where(masks[n], leaves[n].grad * leaves[n], -torch.inf) for n in names}
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        threshold = torch.kthvalue(flat, total - keep).values
        masks = {n: s > threshold for n, s in scores.items()}
    return time.perf_counter() - start, {n: m.numpy() for n, m in masks.items()}


def pruned_alike(scores: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> float:
    """Share of the weights torch pruned that ours prunes too (the lowest scores at the target)."""
    names = list(masks)
    flat = np.concatenate([scores[n].reshape(masks[n].shape).reshape(-1) for n in names])
    kept = np.concatenate([masks[n].reshape(-1) for n in names])
    ours_pruned = np.zeros(flat.size, bool)
    ours_pruned[np.argpartition(flat, round(TARGET * flat.size))[: round(TARGET * flat.size)]] = (
        True
    )
    return float(np.count_nonzero(ours_pruned & ~kept)) / max(1, np.count_nonzero(~kept))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        random_weights(LIGHT / "light_resnet50.onnx", path, sparsity=0.0)
        model = small_input(onnx.load(path), args.size)
    (ours_time, scores), (theirs_time, masks) = ours(model, args.rounds), theirs(model, args.rounds)
    ratio = ours_time / theirs_time
    alike = pruned_alike(scores, masks)
    print(
        f"SynFlow, {args.rounds} rounds to {TARGET:.0%}, ResNet-50 weights at "
        f"{args.size}x{args.size}: ours {ours_time:.1f} s, torch float64 {theirs_time:.1f} s; "
        f"{alike:.4%} of torch's pruned weights pruned by ours"
    )
    fast = print_result(
        f"synflow {args.rounds} rounds / torch (ResNet-50 weights)",
        f"<= {BAR}",
        f"{ratio:.2f}",
        ratio <= BAR,
    )
    same = print_result(
        "synflow pruned weights shared with torch's rounds",
        f">= {AGREE:.1%}",
        f"{alike:.2%}",
        alike >= AGREE,
    )
    return 0 if fast and same else 1


if __name__ == "__main__":
    sys.exit(main())
