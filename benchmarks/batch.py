"""Benchmark ``run_batch`` against a plain loop, and the peak memory of streaming pruning.

In the same run:

- 20 small MLPs (784-512-512-10 and 784-1024-256-10, random weights): a plain sequential loop
  of library calls (``prune`` + writing the model, masks and report, what a batch job does)
  vs ``run_batch`` with the local executor and 1 and 2 workers; prints the times and the
  speedups over the loop. Bars: 1 worker at most 1.5x the loop's time (the process pool and
  result files cost little), 2 workers at least 1.3x faster than the loop when the machine has
  2 cores or more.
- a large model with external data (default 12 weights of 4096 x 4096 float32, 768 MiB; give
  ``--layers 34`` for one over 2 GiB) pruned to 90% tensor by tensor with the ``global`` and
  ``erk`` allocations, each in a fresh process: peak RSS growth relative to the largest tensor
  (bar <= 3x).

    .venv/bin/python benchmarks/batch.py [--layers 12] [--dim 4096]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from _results import print_result  # benchmarks/ is on sys.path
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared model builders
from onnxprune.batch import PruneOptions, run_batch
from onnxprune.outputs import PrunedFiles
from onnxprune.verbs import prune
from tests.batch.models import measure_streaming, write_big_model

MODELS = 20
ONE_WORKER_BAR, TWO_WORKER_BAR, RSS_BAR = 1.5, 1.3, 3.0
SHAPES = ((784, 512, 512, 10), (784, 1024, 256, 10))


def small_model(path: Path, sizes: tuple[int, ...], seed: int) -> None:
    """An MLP of MatMul + Relu layers with random float32 weights."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n), np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def plain_loop(models: list[Path], out: Path, options: PruneOptions) -> None:
    """What a batch does for each model, in this process, one after the other."""
    for path in models:
        files = PrunedFiles.beside(out / path.name)
        files.model.parent.mkdir(parents=True, exist_ok=True)
        prune(
            path,
            options,
            output=files.model,
            masks_out=files.masks,
            report_out=files.report,
        )


def timed(fn, *args, **kwargs) -> float:
    began = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - began


def bench_workers(folder: Path) -> bool:
    zoo = folder / "zoo"
    zoo.mkdir()
    models = []
    for i in range(MODELS):
        models.append(zoo / f"m{i:02d}.onnx")
        small_model(models[-1], SHAPES[i % len(SHAPES)], seed=i)
    options = PruneOptions(sparsity=0.9, allocation="erk")
    plain_loop(models[:2], folder / "warm", options)  # imports and caches, not timed
    loop = timed(plain_loop, models, folder / "loop", options)
    one = timed(run_batch, zoo, folder / "one", options=options, jobs=1)
    two = timed(run_batch, zoo, folder / "two", options=options, jobs=2)
    cores = os.cpu_count() or 1
    ok_one = one <= ONE_WORKER_BAR * loop
    ok_two = cores < 2 or loop / two >= TWO_WORKER_BAR
    print(f"{MODELS} models, 90% erk, {cores} cores: plain loop {loop:.2f} s")
    print(
        f"local executor, 1 worker: {one:.2f} s, speedup {loop / one:.2f}x "
        f"(target time <= {ONE_WORKER_BAR}x the loop){'' if ok_one else '  MISSED'}"
    )
    print(
        f"local executor, 2 workers: {two:.2f} s, speedup {loop / two:.2f}x "
        f"(target >= {TWO_WORKER_BAR}x){'' if ok_two else '  MISSED'}"
    )
    print_result(
        "batch, 1 worker / plain loop", f"<= {ONE_WORKER_BAR}", f"{one / loop:.2f}", ok_one
    )
    target = f">= {TWO_WORKER_BAR}x" + (f" ({cores} core)" if cores < 2 else "")
    print_result("batch, 2 workers speedup over the loop", target, f"{loop / two:.2f}x", ok_two)
    return ok_one and ok_two


def bench_streaming(folder: Path, layers: int, dim: int) -> bool:
    model = write_big_model(folder, layers, dim, dim)
    tensor = dim * dim * 4
    size = layers * tensor
    ok = True
    for allocation in ("global", "erk"):
        result = measure_streaming(model, folder / f"pruned_{allocation}.onnx", allocation)
        ratio = result["growth"] / tensor
        ok &= ratio <= RSS_BAR
        print(
            f"streaming {allocation:<6} 90% of a {size / 2**20:,.0f} MiB external-data model "
            f"({layers} x {tensor / 2**20:.0f} MiB): {result['seconds']:.1f} s, peak RSS growth "
            f"{result['growth'] / 2**20:,.0f} MiB = {ratio:.2f}x the largest tensor, "
            f"{result['growth'] / size:.3f}x the model (target <= {RSS_BAR}x)"
            f"{'' if ratio <= RSS_BAR else '  MISSED'}"
        )
        figure = f"streaming {allocation} peak RSS growth / largest tensor"
        print_result(figure, f"<= {RSS_BAR}", f"{ratio:.2f}", ratio <= RSS_BAR)
        for data in folder.glob(f"pruned_{allocation}.onnx.*.data"):
            data.unlink()
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run both parts; exit status 1 when a bar is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="weights of the large model")
    parser.add_argument("--dim", type=int, default=4096, help="each weight is dim x dim")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="onnxprune-bench-batch-"))
    try:
        (folder / "small").mkdir()
        (folder / "big").mkdir()
        ok = bench_workers(folder / "small")
        ok &= bench_streaming(folder / "big", args.layers, args.dim)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
