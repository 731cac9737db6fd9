"""Benchmark the SynFlow score against a torch implementation of the same rounds.

On ResNet-50-sized weights (the light ResNet-50 of the onnx package, random weights, dense), at a
64 x 64 input (the final average pool shrunk to match) so that 100 rounds take minutes, in the
same run:

- ours: ``synflow`` (``onnxprune/pruners/scores/synflow.py``), 100 rounds to 90% sparsity;
- torch: the same schedule on the linearized float64 network of PAPERS.md (``_linearized.py``):
  each round, kernels ``|w| * mask`` as leaves, all-ones input, backward of the output's sum,
  scores ``|w| * grad``, and the lowest removed until ``(1 - t) ** (i / rounds)`` of the weights
  remain (``torch.topk`` over the survivors).

Target: ours no slower than torch (ratio <= 1.0). Prints one RESULT line; exits 1 when missed.

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

BAR, TARGET = 1.0, 0.9


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


def ours(model: onnx.ModelProto, rounds: int) -> float:
    """Seconds of the SynFlow score (the graph built beforehand, as ``prune`` does)."""
    graph = build_graph(model)
    weights = {layer.name: graph.weight(layer) for layer in graph.layers}
    ctx = ScoreContext(graph, model, target=TARGET, rounds=rounds)
    start = time.perf_counter()
    get_score("synflow").fn(weights, ctx)
    return time.perf_counter() - start


def theirs(model: onnx.ModelProto, rounds: int) -> float:
    """Seconds of the same rounds in torch (float64)."""
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
        scores = torch.cat(
            [
                torch.where(masks[n], leaves[n].grad * leaves[n], -torch.inf).reshape(-1)
                for n in names
            ]
        )
        kept = torch.zeros(total, dtype=torch.bool)
        kept[torch.topk(scores, keep, sorted=False).indices] = True
        offset = 0
        for n in names:
            size = masks[n].numel()
            masks[n] = kept[offset : offset + size].reshape(masks[n].shape)
            offset += size
    return time.perf_counter() - start


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
    ours_time, theirs_time = ours(model, args.rounds), theirs(model, args.rounds)
    ratio = ours_time / theirs_time
    print(
        f"SynFlow, {args.rounds} rounds to {TARGET:.0%}, ResNet-50 weights at "
        f"{args.size}x{args.size}: ours {ours_time:.1f} s, torch float64 {theirs_time:.1f} s"
    )
    ok = print_result(
        f"synflow {args.rounds} rounds / torch (ResNet-50 weights)",
        f"<= {BAR}",
        f"{ratio:.2f}",
        ratio <= BAR,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
